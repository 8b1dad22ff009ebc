"""The in-memory index's scan: quantised (int8 scan + exact re-rank) against the float32
scan it replaced, at N faces, in the same run.

Descriptors are synthetic unit vectors clustered like real ones (a few hundred centres plus
noise), generated here; probes are stored faces with fresh noise, so each search finds its own
cluster. The "before" scan is the previous ``CollectionIndex.search`` kept verbatim below: one
float32 matrix-vector product over every face. Memory per face counts the index's vector
planes (face id strings and the id -> row dict are the same before and after and left out).
Every quantised answer is checked against the float32 one (same faces, same order) while
timing, so a speed-up is never bought with a wrong result.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from facegate.store.face_index import CollectionIndex

DIMENSION = 128
SEARCHES = 60
"""Searches timed per size and threshold (sequential, one thread of Python)."""

THRESHOLDS = (0.8, 1.1)
"""Euclidean distances searched: a strict match radius, and a loose one with many candidates."""

LIMIT = 10


def clustered_descriptors(rng: np.random.Generator, count: int, centres: int = 500, noise: float = 0.6) -> np.ndarray:
    """``count`` float32 unit vectors around ``centres`` random unit centres."""
    middle = rng.standard_normal((centres, DIMENSION)).astype(np.float32)
    middle /= np.linalg.norm(middle, axis=1, keepdims=True)
    out = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 100_000):
        end = min(start + 100_000, count)
        block = middle[rng.integers(0, centres, end - start)]
        block += noise * rng.standard_normal((end - start, DIMENSION)).astype(np.float32) / np.sqrt(DIMENSION)
        out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def float32_scan(vectors: np.ndarray, probe: np.ndarray, max_distance: float, limit: int) -> list[tuple[int, float]]:
    """The index's search before quantisation (users_only off), for the baseline."""
    dots = vectors @ probe.astype(np.float32)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0))
    candidates = np.flatnonzero(distances <= max_distance)
    if len(candidates) > limit:
        candidates = candidates[np.argpartition(distances[candidates], limit - 1)[:limit]]
    ordered = candidates[np.argsort(distances[candidates], kind="stable")]
    return [(int(i), float(distances[i])) for i in ordered]


def _p50_ms(samples: list[float]) -> float:
    return round(float(np.percentile(samples, 50)) * 1000.0, 3)


def run_index_bench(faces: int, seed: int = 11) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    vectors = clustered_descriptors(rng, faces)
    index = CollectionIndex(DIMENSION)
    index.reserve(faces)
    face_ids = [str(i) for i in range(faces)]
    for start in range(0, faces, 100_000):
        end = min(start + 100_000, faces)
        index.extend(face_ids[start:end], vectors[start:end], [None] * (end - start))
    probes = vectors[rng.integers(0, faces, SEARCHES)] + 0.3 * rng.standard_normal((SEARCHES, DIMENSION)).astype(np.float32) / np.sqrt(DIMENSION)
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    per_threshold = []
    for max_distance in THRESHOLDS:
        before: list[float] = []
        after: list[float] = []
        mismatches, hits = 0, 0
        for probe in probes:
            started = time.perf_counter()
            expected = float32_scan(vectors, probe, max_distance, LIMIT)
            before.append(time.perf_counter() - started)
            started = time.perf_counter()
            found = index.search(probe, max_distance, LIMIT, False)
            after.append(time.perf_counter() - started)
            hits += len(found)
            same_faces = [int(n.face_id) for n in found] == [i for i, _ in expected]
            same_distances = np.allclose([n.distance for n in found], [d for _, d in expected], atol=1e-3)
            mismatches += not (same_faces and same_distances)
        per_threshold.append({
            "max_distance": max_distance, "limit": LIMIT, "mean_hits": hits / len(probes),
            "float32_scan_p50_ms": _p50_ms(before), "quantised_p50_ms": _p50_ms(after),
            "speedup_p50": round(_p50_ms(before) / _p50_ms(after), 2), "answers_differing": mismatches,
        })
    held, scanned = index.nbytes()
    return {
        "faces": faces, "dimension": DIMENSION, "searches": SEARCHES,
        "scan": "int8 codes with a scale per face (simsimd SIMD dot products), then exact float64 re-rank of the float32 vectors",
        "bytes_per_face_before": vectors.nbytes / faces, "bytes_per_face_after": held / faces,
        "bytes_scanned_per_face_before": vectors.nbytes / faces, "bytes_scanned_per_face_after": scanned / faces,
        "thresholds": per_threshold,
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(default)"),
    }
