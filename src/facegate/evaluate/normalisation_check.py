"""How much score normalisation narrows the demographic differential, measured honestly.

Fitting the normalisation and measuring it on the same photos flatters it, so this
cross-fits: the labelled photos are split in two seeded halves; the normalisation is
fitted on one half (without reading a label) and the other half is measured with and
without it, at that half's own global FMR 1e-3 threshold; then the halves swap. Labels
are only read to measure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facegate.engine.score_normalisation import ScoreNormalisation
from facegate.evaluate.normalisation_fit import fit_score_normalisation

TARGET_FMR = 1e-3


def cross_fitted_differential(
    descriptors: np.ndarray, identities: Sequence[str], groups: Sequence[str], clusters: int, seed: int = 0
) -> dict[str, Any]:
    """Worst group's FMR and worst-to-best ratio, raw and normalised, per held-out half and
    averaged. ``groups`` label each photo (e.g. ``Asian×F``); photos of one identity must
    not be split, so the halves are drawn by identity."""
    identities, groups = np.asarray(identities), np.asarray(groups)
    people = np.unique(identities)
    rng = np.random.default_rng(seed)
    first = set(rng.permutation(people)[: len(people) // 2].tolist())
    in_first = np.array([i in first for i in identities])
    folds = []
    for fit_on in (in_first, ~in_first):
        measured = ~fit_on
        normalisation = fit_score_normalisation(descriptors[fit_on], identities[fit_on], clusters, TARGET_FMR, seed)
        folds.append({
            "raw": _differential(descriptors[measured], identities[measured], groups[measured], None),
            "normalised": _differential(descriptors[measured], identities[measured], groups[measured], normalisation),
            "clusters": len(normalisation.centroids),
        })
    mean = {kind: {key: _mean([f[kind][key] for f in folds]) for key in ("worst_fmr", "ratio")} for kind in ("raw", "normalised")}
    return {"folds": folds, "mean": mean, "target_fmr": TARGET_FMR, "seed": seed}


def _differential(
    descriptors: np.ndarray, identities: np.ndarray, groups: np.ndarray, normalisation: ScoreNormalisation | None
) -> dict[str, Any]:
    """Per-group FMR of same-group impostor pairs at the global FMR 1e-3 distance."""
    squared = np.maximum(2.0 - 2.0 * descriptors @ descriptors.T, 0.0)
    if normalisation is not None:
        shift = normalisation.shift(descriptors)
        squared = np.maximum(squared + (shift[:, None] + shift[None, :]) / 2, 0.0)
    a, b = np.triu_indices(len(descriptors), 1)
    impostor = identities[a] != identities[b]
    threshold = np.quantile(squared[a[impostor], b[impostor]], TARGET_FMR)
    rates = {}
    for group in np.unique(groups):
        pairs = impostor & (groups[a] == group) & (groups[b] == group)
        if pairs.any():
            rates[str(group)] = float((squared[a[pairs], b[pairs]] <= threshold).mean())
    best = min(rates.values())
    return {
        "fmr_by_group": rates,
        "worst_fmr": max(rates.values()),
        "worst_group": max(rates, key=rates.__getitem__),
        "ratio": max(rates.values()) / best if best > 0 else None,  # no false match in the best group
    }


def _mean(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else float(np.mean(values))
