"""Label-free score normalisation on synthetic descriptors: the fit equalises each
cluster's false match rate, and the search radius never misses a face."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.engine.score_normalisation import ScoreNormalisation
from facegate.evaluate.normalisation_fit import MIN_CLUSTER, fit_score_normalisation


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


CENTRES = unit(np.random.default_rng(99).normal(size=(2, 64)))


def two_populations(seed: int = 0, each: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """One tight population (its strangers look alike, as for the groups a matcher was not
    trained on) and one spread-out population, one photo per person; ``seed`` draws people."""
    rng = np.random.default_rng(seed)
    centres = CENTRES
    tight = unit(centres[0] + 0.08 * rng.normal(size=(each, 64)))
    spread = unit(centres[1] + 0.16 * rng.normal(size=(each, 64)))
    return np.vstack([tight, spread]), np.repeat([0, 1], each)


def fmr_by_population(descriptors: np.ndarray, population: np.ndarray, normalisation: ScoreNormalisation | None) -> list[float]:
    distances = np.sqrt(np.maximum(2 - 2 * descriptors @ descriptors.T, 0))
    if normalisation is not None:
        shift = normalisation.shift(descriptors)
        distances = normalisation.normalised(distances, shift[:, None], shift[None, :])
    a, b = np.triu_indices(len(descriptors), 1)
    threshold = np.quantile(distances[a, b], 1e-3)
    return [float((distances[a, b][(population[a] == p) & (population[b] == p)] <= threshold).mean()) for p in (0, 1)]


def test_fitting_evens_out_the_false_match_rate_of_populations_it_was_never_told_about():
    descriptors, population = two_populations()
    before = fmr_by_population(descriptors, population, None)
    assert before[1] == 0 and before[0] > 0.003  # every false match at the global threshold is in one population
    fitted = fit_score_normalisation(descriptors, [str(i) for i in range(len(descriptors))], clusters=4, seed=1)
    held_out, held_population = two_populations(seed=2)
    after = fmr_by_population(held_out, held_population, fitted)
    assert min(after) > 0 and max(after) / min(after) < 4
    assert fitted.provenance["clusters"] <= 4 and min(fitted.provenance["cluster_sizes"]) >= MIN_CLUSTER


def test_clusters_smaller_than_the_minimum_are_merged_away():
    descriptors, _ = two_populations(each=60)
    fitted = fit_score_normalisation(descriptors, [str(i) for i in range(len(descriptors))], clusters=12, seed=0)
    assert min(fitted.provenance["cluster_sizes"]) >= MIN_CLUSTER and len(fitted.centroids) < 12


def test_pairs_of_one_person_are_not_counted_as_impostors():
    descriptors, _ = two_populations(each=100)
    twins = np.vstack([descriptors, descriptors])  # the same face twice per person
    people = [str(i) for i in range(len(descriptors))] * 2
    fitted = fit_score_normalisation(twins, people, clusters=2, seed=0)
    assert fitted.provenance["global_threshold_distance"] > 0.05  # identical pairs (distance 0) were left out


@pytest.mark.parametrize("seed", range(5))
def test_the_raw_search_radius_contains_every_face_within_the_normalised_one(seed):
    rng = np.random.default_rng(seed)
    normalisation = ScoreNormalisation(centroids=unit(rng.normal(size=(6, 16))), shifts=rng.normal(0, 0.2, size=6))
    probe, gallery = unit(rng.normal(size=(1, 16))), unit(rng.normal(size=(2000, 16)))
    raw = np.sqrt(np.maximum(2 - 2 * gallery @ probe[0], 0))
    probe_shift = float(normalisation.shift(probe)[0])
    normalised = normalisation.normalised(raw, probe_shift, normalisation.shift(gallery))
    for radius in (1.3, 1.4, 1.5):
        inside = normalised <= radius
        assert inside.any() and np.all(raw[inside] <= normalisation.raw_radius(radius, probe_shift) + 1e-12)


def test_a_normalisation_survives_its_json_round_trip():
    descriptors, _ = two_populations(each=120)
    fitted = fit_score_normalisation(descriptors, [str(i) for i in range(len(descriptors))], clusters=3, seed=0)
    again = ScoreNormalisation.from_json(fitted.to_json())
    assert np.allclose(again.centroids, fitted.centroids, atol=1e-6) and np.array_equal(again.shifts, fitted.shifts)
    assert np.array_equal(again.shift(descriptors), fitted.shift(descriptors))
