"""Fitting label-free score normalisation (``engine/score_normalisation.py``) on a
reference set of photos.

The only labels used are identities (which photos show the same person), to tell impostor
pairs from genuine ones; no demographic label is read. The fit is seeded and deterministic.
Each shipped cluster holds at least ``MIN_CLUSTER`` faces, so a centroid is an average of
many people, never a stand-in for one person's descriptor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np

from facegate.engine.score_normalisation import ScoreNormalisation

MIN_CLUSTER = 50
"""Clusters with fewer reference faces are merged into their nearest neighbour's."""

MAX_IMPOSTOR_PAIRS = 4_000_000
"""Impostor pairs sampled to place the thresholds (about 4,000 above FMR 1e-3 overall)."""


def spherical_kmeans(descriptors: np.ndarray, clusters: int, seed: int, iterations: int = 60) -> np.ndarray:
    """Unit-length centroids (clusters, d) of unit vectors, by cosine k-means with k-means++
    seeding. Written out (twenty lines of numpy) rather than adding a dependency for it."""
    rng = np.random.default_rng(seed)
    centroids = descriptors[[int(rng.integers(len(descriptors)))]]
    while len(centroids) < clusters:
        far = np.maximum(1.0 - (descriptors @ centroids.T).max(axis=1), 0.0)
        centroids = np.vstack([centroids, descriptors[rng.choice(len(descriptors), p=far / far.sum())]])
    for _ in range(iterations):
        members = np.argmax(descriptors @ centroids.T, axis=1)
        moved = np.stack([descriptors[members == c].mean(axis=0) if (members == c).any() else centroids[c] for c in range(clusters)])
        moved /= np.linalg.norm(moved, axis=1, keepdims=True)
        if np.allclose(moved, centroids):
            break
        centroids = moved
    return centroids


def fit_score_normalisation(
    descriptors: np.ndarray, identities: Sequence[str], clusters: int, target_fmr: float = 1e-3, seed: int = 0,
    source: str = "",
) -> ScoreNormalisation:
    """Cluster ``descriptors`` (n, d), unit length, and give each cluster the shift that
    moves its impostor threshold at ``target_fmr`` onto the global one."""
    descriptors = np.asarray(descriptors, dtype=np.float64)
    identities = np.asarray(identities)
    centroids = _merge_small(descriptors, spherical_kmeans(descriptors, clusters, seed))
    members = np.argmax(descriptors @ centroids.T, axis=1)
    a, b = _impostor_pairs(identities, seed)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", descriptors[a], descriptors[b]), 0.0))
    overall = float(np.quantile(distances, target_fmr))
    shifts = np.array([
        overall**2 - float(np.quantile(distances[(members[a] == c) | (members[b] == c)], target_fmr)) ** 2
        for c in range(len(centroids))
    ])
    provenance: dict[str, Any] = {
        "fitted_on": source,
        "faces": len(descriptors),
        "identities": len(set(identities.tolist())),
        "impostor_pairs": len(a),
        "clusters": len(centroids),
        "cluster_sizes": np.bincount(members, minlength=len(centroids)).tolist(),
        "target_fmr": target_fmr,
        "global_threshold_distance": overall,
        "seed": seed,
        "date": dt.date.today().isoformat(),
        "method": "spherical k-means; per-cluster impostor distance at the target FMR; "
                  "shift = global² - cluster² in squared distance (Terhörst et al., IJCB 2020)",
    }
    return ScoreNormalisation(centroids=centroids, shifts=shifts, provenance=provenance)


def _merge_small(descriptors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Drop the smallest cluster under ``MIN_CLUSTER`` members, reassign, and repeat."""
    while len(centroids) > 1:
        sizes = np.bincount(np.argmax(descriptors @ centroids.T, axis=1), minlength=len(centroids))
        smallest = int(np.argmin(sizes))
        if sizes[smallest] >= MIN_CLUSTER:
            break
        centroids = np.delete(centroids, smallest, axis=0)
        members = np.argmax(descriptors @ centroids.T, axis=1)
        centroids = np.stack([descriptors[members == c].mean(axis=0) for c in range(len(centroids))])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return centroids


def _impostor_pairs(identities: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of photos of different people, or a seeded sample of ``MAX_IMPOSTOR_PAIRS``."""
    n = len(identities)
    if n * (n - 1) // 2 <= MAX_IMPOSTOR_PAIRS:
        a, b = np.triu_indices(n, 1)
    else:
        rng = np.random.default_rng(seed)
        a, b = rng.integers(n, size=MAX_IMPOSTOR_PAIRS), rng.integers(n, size=MAX_IMPOSTOR_PAIRS)
    different = identities[a] != identities[b]
    return a[different], b[different]
