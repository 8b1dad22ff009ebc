"""The quantised scan in ``CollectionIndex`` returns exactly what an exact search returns.

The reference is a brute-force float64 scan of the stored float32 vectors. Descriptors are
seeded random unit vectors clustered like real ones (a few hundred centres plus noise), and
adversarial ones placed just inside and just outside the threshold, chosen so that int8
quantisation moves their dot product the wrong way."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from facegate.store.face_index import CollectionIndex, FaceIndex, quantised

DIMENSION = 128
BOUNDARY_OFFSET = 2e-5  # far above float32 rounding of a distance, far below int8 quantisation error


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _clustered(rng: np.random.Generator, count: int, centres: int = 300, noise: float = 0.35) -> np.ndarray:
    middle = _unit(rng.standard_normal((centres, DIMENSION)))
    picks = rng.integers(0, centres, count)
    return _unit(middle[picks] + noise * rng.standard_normal((count, DIMENSION)) / np.sqrt(DIMENSION))


def _at_distance(rng: np.random.Generator, probe: np.ndarray, distance: float, count: int) -> np.ndarray:
    """``count`` unit vectors at exactly ``distance`` from ``probe`` (in float64)."""
    p = probe.astype(np.float64)
    p /= np.linalg.norm(p)
    cosine = 1.0 - distance**2 / 2.0
    side = rng.standard_normal((count, DIMENSION))
    side -= np.outer(side @ p, p)
    side /= np.linalg.norm(side, axis=1, keepdims=True)
    return (cosine * p + np.sqrt(1.0 - cosine**2) * side).astype(np.float32)


def _quantised_dots(vectors: np.ndarray, probe: np.ndarray) -> np.ndarray:
    """What a scan of rows and probe quantised to int8 would score (no margin)."""
    def rebuilt(x: np.ndarray) -> np.ndarray:
        codes, scales, _ = quantised(np.atleast_2d(x))
        return codes.astype(np.float64) * scales.astype(np.float64)[:, None]
    return rebuilt(vectors) @ rebuilt(probe)[0]


def _float64_distances(vectors: np.ndarray, probe: np.ndarray) -> np.ndarray:
    dots = vectors.astype(np.float64) @ probe.astype(np.float64)
    return np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0))


def _brute_force(ids: list[str], distances: np.ndarray, users: list[str | None],
                 max_distance: float, limit: int | None, users_only: bool) -> list[tuple[str, float]]:
    """Every face scored in float64 (``_float64_distances``); nearest first, ties by insertion order."""
    eligible = (distances <= max_distance) & (np.array([user is not None for user in users]) | (not users_only))
    hits = np.flatnonzero(eligible)
    hits = hits[np.lexsort((hits, distances[hits]))][:limit]
    return [(ids[i], float(distances[i])) for i in hits]


def _assert_same(found: list, expected: list[tuple[str, float]]) -> None:
    assert [n.face_id for n in found] == [face_id for face_id, _ in expected]
    np.testing.assert_allclose([n.distance for n in found], [d for _, d in expected], rtol=1e-9, atol=1e-9)


def _filled(ids: list[str], vectors: np.ndarray, users: list[str | None]) -> CollectionIndex:
    index = CollectionIndex(DIMENSION)
    half = len(ids) // 2
    for face_id, vector, user in zip(ids[:half], vectors[:half], users[:half]):
        index.add(face_id, vector, user)
    index.extend(ids[half:], vectors[half:], users[half:])
    return index


def test_clustered_search_equals_brute_force_for_every_threshold_limit_and_user_filter() -> None:
    rng = np.random.default_rng(11)
    vectors = _clustered(rng, 6000)
    ids = [f"face-{i}" for i in range(len(vectors))]
    users = [f"user-{i % 50}" if i % 3 == 0 else None for i in range(len(vectors))]
    index = _filled(ids, vectors, users)
    probes = np.concatenate([vectors[rng.integers(0, len(vectors), 12)], _clustered(rng, 8)])
    for probe in probes:
        distances = _float64_distances(vectors, probe)
        for max_distance in (0.0, 0.2, 0.5, 0.8, 1.0, 1.3, 2.0, float("inf")):
            for limit in (None, 1, 3, 50, 10_000):
                for users_only in (False, True):
                    found = index.search(probe, max_distance, limit, users_only)
                    _assert_same(found, _brute_force(ids, distances, users, max_distance, limit, users_only))


def test_faces_quantised_across_the_threshold_are_judged_on_their_exact_distance() -> None:
    rng = np.random.default_rng(12)
    probe = _unit(rng.standard_normal(DIMENSION))
    threshold = 0.9
    inside = _at_distance(rng, probe, threshold - BOUNDARY_OFFSET, 3000)
    outside = _at_distance(rng, probe, threshold + BOUNDARY_OFFSET, 3000)
    lowest_dot = 1.0 - threshold**2 / 2.0
    # Keep the adversarial ones: inside faces whose int8 dot says "outside", and the outside
    # faces whose int8 dot says "inside" (or, failing those, that it scores nearest the threshold).
    inside = inside[_quantised_dots(inside, probe) < lowest_dot][:300]
    outside = outside[np.argsort(-_quantised_dots(outside, probe))[:300]]
    assert len(inside) > 50 and (_quantised_dots(outside, probe) >= lowest_dot).sum() > 50
    distractors = _clustered(rng, 2000)
    vectors = np.concatenate([inside, outside, distractors])
    ids = [f"face-{i}" for i in range(len(vectors))]
    users: list[str | None] = [f"user-{i}" if i % 2 else None for i in range(len(vectors))]
    index = _filled(ids, vectors, users)
    distances = _float64_distances(vectors, probe)
    for limit in (None, 1, 10, 299, 301, 1000):
        for users_only in (False, True):
            found = index.search(probe, threshold, limit, users_only)
            _assert_same(found, _brute_force(ids, distances, users, threshold, limit, users_only))
    assert {n.face_id for n in index.search(probe, threshold, None, False)} >= {f"face-{i}" for i in range(len(inside))}


def test_removal_swap_and_user_changes_keep_search_exact() -> None:
    rng = np.random.default_rng(13)
    vectors = _clustered(rng, 3000)
    ids = [f"face-{i}" for i in range(len(vectors))]
    users: list[str | None] = [None] * len(vectors)
    index = _filled(ids, vectors, users)
    alive = np.ones(len(ids), dtype=bool)
    for i in rng.permutation(len(ids))[:1200]:
        index.remove(ids[i])
        alive[i] = False
    for i in rng.permutation(len(ids))[:500]:
        users[i] = f"user-{i}"
        index.set_user(ids[i], users[i])
    index.extend(["late-1", "late-2"], vectors[:2], ["user-late", None])  # a removed face's vector, new id
    kept = [i for i in range(len(ids)) if alive[i]]
    live_ids = [ids[i] for i in kept] + ["late-1", "late-2"]
    live_vectors = np.concatenate([vectors[kept], vectors[:2]])
    live_users = [users[i] for i in kept] + ["user-late", None]
    assert len(index) == len(live_ids)
    for probe in vectors[rng.integers(0, len(vectors), 10)]:
        distances = _float64_distances(live_vectors, probe)
        for max_distance, limit, users_only in ((0.6, None, False), (1.0, 5, True), (2.0, 20, False), (0.9, 1, True)):
            found = index.search(probe, max_distance, limit, users_only)
            _assert_same(found, _brute_force(live_ids, distances, live_users, max_distance, limit, users_only))


def test_stored_vectors_come_back_exactly_as_float32() -> None:
    rng = np.random.default_rng(14)
    vectors = _clustered(rng, 500)
    ids = [f"face-{i}" for i in range(len(vectors))]
    face_index = FaceIndex(DIMENSION)
    face_index.collection(7).extend(ids, vectors, [None] * len(ids))
    face_index.collection(7).remove("face-3")
    assert np.array_equal(face_index.vector(7, "face-10"), vectors[10])
    assert [v is None for v in face_index.vectors(7, ["face-3", "face-499"])] == [True, False]
    assert np.array_equal(face_index.vectors(7, ["face-499"])[0], vectors[499])
    snapshot = face_index.snapshot()[7]
    assert len(snapshot) == 499 and np.array_equal(snapshot["face-0"][0], vectors[0])


def test_empty_and_zero_vectors_are_searchable() -> None:
    index = CollectionIndex(DIMENSION)
    probe = _unit(np.ones(DIMENSION))
    assert index.search(probe, 2.0, None, False) == []
    index.add("zero", np.zeros(DIMENSION, dtype=np.float32), None)
    assert [(n.face_id, n.distance) for n in index.search(probe, 2.0, None, False)] == [("zero", pytest.approx(np.sqrt(2.0)))]


def test_searches_leave_the_reference_count_of_none_alone() -> None:
    """A C extension that returns None without a reference of its own takes one from None at
    every call; on Python 3.11 None is then freed after enough searches and the server dies."""
    rng = np.random.default_rng(15)
    index = _filled([f"face-{i}" for i in range(300)], _clustered(rng, 300), [None] * 300)
    probe = _clustered(rng, 1)[0]
    index.search(probe, 1.0, 10, False)
    before = sys.getrefcount(None)
    for _ in range(2000):
        index.search(probe, 1.0, 10, False)
    assert abs(sys.getrefcount(None) - before) < 100
