"""Biometric error statistics, in ISO/IEC 19795-1 vocabulary.

A score is a similarity on 0–100 (higher is more alike); a pair matches at threshold
``t`` when ``score >= t``. FMR is the share of impostor pairs (different people) that
match; FNMR the share of genuine pairs (same person) that do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_Z_95 = 1.959963984540054


@dataclass(frozen=True)
class RateAt:
    """Error rates at one threshold, with counts and 95% Wilson intervals."""

    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    impostor_count: int
    false_non_matches: int
    genuine_count: int
    fmr_interval: tuple[float, float]
    fnmr_interval: tuple[float, float]


def error_rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FMR, FNMR) at ``threshold``; a rate over zero pairs is NaN."""
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    fmr = float((impostor >= threshold).mean()) if impostor.size else math.nan
    fnmr = float((genuine < threshold).mean()) if genuine.size else math.nan
    return fmr, fnmr


def rate_at(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> RateAt:
    genuine, impostor = np.asarray(genuine, float), np.asarray(impostor, float)
    false_matches = int((impostor >= threshold).sum())
    false_non_matches = int((genuine < threshold).sum())
    fmr, fnmr = error_rates(genuine, impostor, threshold)
    return RateAt(
        threshold=threshold,
        fmr=fmr,
        fnmr=fnmr,
        false_matches=false_matches,
        impostor_count=int(impostor.size),
        false_non_matches=false_non_matches,
        genuine_count=int(genuine.size),
        fmr_interval=wilson_interval(false_matches, int(impostor.size)),
        fnmr_interval=wilson_interval(false_non_matches, int(genuine.size)),
    )


def wilson_interval(successes: int, trials: int, z: float = _Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default). Well-behaved at 0 and at n,
    which matters here: a measured FMR of 0 still gets an honest upper bound."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``; seeded, so reproducible."""
    values = np.asarray(values)
    rng = np.random.default_rng(seed)
    estimates = np.array(
        [statistic(values[rng.integers(0, len(values), len(values))]) for _ in range(n_resamples)]
    )
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(estimates, tail)), float(np.percentile(estimates, 100 - tail))


def roc_det(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FMR, FNMR) at every distinct score, thresholds ascending. Vectorised:
    one sort and two searchsorted calls, so millions of pairs are cheap."""
    genuine, impostor = np.sort(np.asarray(genuine, float)), np.sort(np.asarray(impostor, float))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    fmr = (impostor.size - np.searchsorted(impostor, thresholds, side="left")) / max(impostor.size, 1)
    fnmr = np.searchsorted(genuine, thresholds, side="left") / max(genuine.size, 1)
    return thresholds, fmr, fnmr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): where FMR and FNMR cross. Between the two distinct thresholds that
    bracket the crossing, the rates are interpolated linearly and the crossing taken."""
    thresholds, fmr, fnmr = roc_det(genuine, impostor)
    difference = fmr - fnmr  # falls from >= 0 to <= 0 as the threshold rises
    after = int(np.argmax(difference <= 0))
    if after == 0:
        return float((fmr[0] + fnmr[0]) / 2), float(thresholds[0])
    before = after - 1
    d0, d1 = difference[before], difference[after]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    eer = fmr[before] + w * (fmr[after] - fmr[before])
    return float(eer), float(thresholds[before] + w * (thresholds[after] - thresholds[before]))


def threshold_for_fmr(impostor: np.ndarray, target_fmr: float) -> tuple[float, bool]:
    """(lowest threshold with FMR <= target, resolvable). Not resolvable when there are
    fewer than 3/target impostor pairs: such a threshold rests on too few false matches."""
    impostor = np.sort(np.asarray(impostor, float))
    n = impostor.size
    allowed = int(math.floor(target_fmr * n))  # false matches we may keep
    if allowed >= n:
        threshold = float(impostor[0]) if n else 0.0
    else:
        # Everything strictly above the (n - allowed)-th smallest score may match.
        threshold = float(np.nextafter(impostor[n - allowed - 1], math.inf))
    return threshold, n >= 3 / target_fmr


def best_accuracy_threshold(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The threshold maximising (true matches + true non-matches) / all pairs.
    Ties go to the lowest such threshold."""
    thresholds, fmr, fnmr = roc_det(genuine, impostor)
    n_g, n_i = len(genuine), len(impostor)
    correct = (1 - fnmr) * n_g + (1 - fmr) * n_i
    return float(thresholds[int(np.argmax(correct))])


def kfold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[float, float, list[float]]:
    """The LFW protocol: each fold is scored at the threshold that is best on the others.
    Returns (mean accuracy, standard deviation across folds, per-fold accuracies)."""
    scores, same, folds = np.asarray(scores, float), np.asarray(same, bool), np.asarray(folds)
    accuracies = []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_accuracy_threshold(scores[train & same], scores[train & ~same])
        accuracies.append(float(((scores[test] >= threshold) == same[test]).mean()))
    return float(np.mean(accuracies)), float(np.std(accuracies)), accuracies


def ratio_to_lowest(rates: dict[str, float]) -> dict[str, float | None]:
    """NIST-style differentials: each group's rate over the lowest nonzero rate.

    A group at 0 gets 0; NaN rates (unmeasurable) get None; if no group has a
    nonzero rate every ratio is None, because there is nothing to compare against.
    """
    measured = [r for r in rates.values() if r is not None and not math.isnan(r) and r > 0]
    if not measured:
        return {group: None for group in rates}
    lowest = min(measured)
    return {
        group: None if rate is None or math.isnan(rate) else rate / lowest for group, rate in rates.items()
    }
