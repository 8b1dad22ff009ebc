"""Error statistics on constructed score sets whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facegate.evaluate.calibration_fit import fit_logistic
from facegate.evaluate.lfw_pairs import parse_pairs
from facegate.evaluate.stats import (
    best_accuracy_threshold,
    bootstrap_interval,
    equal_error_rate,
    error_rates,
    kfold_accuracy,
    rate_at,
    ratio_to_lowest,
    roc_det,
    threshold_for_fmr,
    wilson_interval,
)

GENUINE = np.array([60.0, 70.0, 80.0, 90.0, 95.0])
IMPOSTOR = np.array([10.0, 20.0, 30.0, 65.0, 85.0])


def test_fmr_and_fnmr_count_matches_at_or_above_the_threshold():
    # At 80: impostors >= 80 -> {85} = 1/5; genuine < 80 -> {60, 70} = 2/5.
    assert error_rates(GENUINE, IMPOSTOR, 80) == (0.2, 0.4)
    # At 65 the impostor at exactly 65 matches.
    assert error_rates(GENUINE, IMPOSTOR, 65) == (0.4, 0.2)


def test_rate_at_reports_counts_and_intervals_that_contain_the_rate():
    rate = rate_at(GENUINE, IMPOSTOR, 80)
    assert (rate.false_matches, rate.impostor_count, rate.false_non_matches, rate.genuine_count) == (1, 5, 2, 5)
    assert rate.fmr_interval[0] <= 0.2 <= rate.fmr_interval[1]


def test_wilson_interval_matches_the_textbook_value():
    # 10 successes in 100 trials, 95%: (0.0552, 0.1744) to 4 places.
    low, high = wilson_interval(10, 100)
    assert low == pytest.approx(0.0552, abs=1e-4) and high == pytest.approx(0.1744, abs=1e-4)


def test_wilson_interval_gives_an_honest_upper_bound_for_zero_errors():
    low, high = wilson_interval(0, 1200)
    assert low == pytest.approx(0.0, abs=1e-15) and high == pytest.approx(3.84 / (1200 + 3.84), rel=1e-3)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(50, 50)[1] == 1.0


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.arange(100, dtype=float)
    first = bootstrap_interval(values, np.mean, n_resamples=300, seed=7)
    assert first == bootstrap_interval(values, np.mean, n_resamples=300, seed=7)
    assert first[0] < 49.5 < first[1]


def test_roc_det_lists_every_distinct_score():
    thresholds, fmr, fnmr = roc_det(GENUINE, IMPOSTOR)
    assert list(thresholds) == sorted(set(GENUINE) | set(IMPOSTOR))
    assert fmr[list(thresholds).index(80.0)] == 0.2 and fnmr[list(thresholds).index(80.0)] == 0.4
    assert np.all(np.diff(fmr) <= 0) and np.all(np.diff(fnmr) >= 0)


def test_eer_of_separable_scores_is_zero_and_of_identical_scores_is_a_half():
    eer, threshold = equal_error_rate(np.array([80.0, 90.0]), np.array([10.0, 20.0]))
    assert eer == 0.0 and 20.0 <= threshold <= 80.0
    eer, _ = equal_error_rate(np.array([50.0, 50.0]), np.array([50.0, 50.0]))
    assert eer == pytest.approx(0.5)


def test_eer_where_the_curves_cross_between_scores():
    # At 65: FMR 2/5, FNMR 1/5; at 70: FMR 1/5, FNMR 1/5 -> they meet at 0.2.
    eer, _ = equal_error_rate(GENUINE, IMPOSTOR)
    assert eer == pytest.approx(0.2)


def test_threshold_for_fmr_keeps_at_most_the_allowed_false_matches():
    impostor = np.arange(1000, dtype=float)  # 0..999
    threshold, resolvable = threshold_for_fmr(impostor, 0.01)  # 10 may match: 990..999
    assert error_rates(np.array([]), impostor, threshold)[0] == 0.01
    assert 989 < threshold <= 990 and resolvable
    assert threshold_for_fmr(impostor, 1e-4)[1] is False  # 1,000 pairs cannot resolve 1e-4


def test_best_accuracy_threshold_separates_separable_scores():
    threshold = best_accuracy_threshold(np.array([70.0, 80.0]), np.array([10.0, 20.0]))
    assert 20.0 < threshold <= 70.0


def test_kfold_picks_each_threshold_on_the_other_folds():
    # Fold 0 is separable at 50; fold 1's one overlapping impostor (60) costs fold 1 a pair.
    scores = np.array([90, 80, 10, 20, 90, 55, 60, 20], dtype=float)
    same = np.array([1, 1, 0, 0, 1, 1, 0, 0], dtype=bool)
    folds = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    mean, std, per_fold = kfold_accuracy(scores, same, folds)
    # Fold 0's threshold comes from fold 1, where 55 and 90 both get 3 of 4 right: ties go
    # low, so 55, which fold 0 passes perfectly. Fold 1's comes from fold 0: 80, which
    # misses fold 1's genuine 55.
    assert per_fold == [1.0, 0.75]
    assert mean == 0.875 and std == pytest.approx(0.125)


def test_ratio_to_lowest_divides_by_the_lowest_nonzero_rate():
    ratios = ratio_to_lowest({"a": 0.001, "b": 0.004, "c": 0.0, "d": math.nan})
    assert ratios == {"a": 1.0, "b": 4.0, "c": 0.0, "d": None}
    assert ratio_to_lowest({"a": 0.0, "b": 0.0}) == {"a": None, "b": None}


def test_logistic_fit_recovers_known_parameters():
    rng = np.random.default_rng(3)
    distances = rng.uniform(0.1, 0.9, 20000)
    same = rng.random(20000) < 1 / (1 + np.exp(30 * (distances - 0.5)))
    slope, midpoint = fit_logistic(distances, same)
    assert slope == pytest.approx(30, rel=0.1) and midpoint == pytest.approx(0.5, abs=0.01)


def test_logistic_fit_weighs_classes_equally_whatever_their_counts():
    genuine, impostor = np.full(10, 0.3), np.full(1000, 0.7)
    rng = np.random.default_rng(0)
    distances = np.concatenate([genuine, impostor]) + rng.normal(0, 0.1, 1010)
    same = np.arange(1010) < 10
    _, midpoint = fit_logistic(distances, same)
    assert midpoint == pytest.approx(0.5, abs=0.05)


PAIRS_2_FOLDS = "2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t4\nC\t1\tD\t1\n"


def test_pairs_file_with_any_fold_count_parses_in_order():
    pairs = parse_pairs(PAIRS_2_FOLDS)
    assert [(p.fold, p.same) for p in pairs] == [(0, True), (0, False), (1, True), (1, False)]
    assert pairs[1].path_a == "A/A_0001.jpg" and pairs[1].path_b == "B/B_0003.jpg"


def test_ten_fold_file_parses():
    lines = ["10\t2"] + [line for _ in range(10) for line in ("X\t1\t2", "X\t2\t3", "X\t1\tY\t1", "Y\t2\tZ\t2")]
    assert len({p.fold for p in parse_pairs("\n".join(lines))}) == 10


@pytest.mark.parametrize(
    "text, message",
    [("", "empty"), ("two\t1\n", "line 1"), ("1\t1\nA\t1\t2\n", "expected 2 pair lines"), ("1\t1\nA\t1\nB\t1\tC\t1\n", "line 2")],
)
def test_malformed_pairs_files_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_pairs(text)


def test_the_development_pairs_file_has_four_folds_of_300(faces_dir):
    pairs = parse_pairs((faces_dir / "lfw_erstrong" / "_labels" / "pairs.txt").read_text())
    assert len(pairs) == 2400 and sorted({p.fold for p in pairs}) == [0, 1, 2, 3]
    assert sum(p.same for p in pairs) == 1200
