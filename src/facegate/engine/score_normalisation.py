"""Label-free score normalisation, after Terhörst et al., "Fair Score Normalization" (IJCB 2020).

Why: one global threshold treats every comparison alike, but impostors score closer in
some regions of descriptor space than in others, and those regions line up with
demographic groups. That is how a matcher calibrated on one population falsely matches
another. Here the descriptor space is cut into clusters (k-means on an unlabelled
reference set), each cluster's own impostor threshold at the target FMR is measured, and
every comparison is shifted by the mean of its two faces' cluster shifts, so each
cluster's threshold lands on the global one. No demographic label is used, to fit it or
to apply it; labels only measure the result (``facegate evaluate demographics``).

The shift is additive in squared Euclidean distance, which for unit-length descriptors is
FSN's shift of the cosine score (``d² = 2 - 2 cos``):

    d'² = max(d² + (shift[cluster(a)] + shift[cluster(b)]) / 2, 0)

with ``shift[c] = t_global² - t_c²`` for the distances ``t`` at the target FMR. The
calibration of a normalised model is fitted on these normalised distances, so its
similarities still map to published error rates.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ScoreNormalisation:
    """Cluster centroids (k, dimension), unit length, and each cluster's shift (k,) in
    squared distance. Fitted by ``facegate evaluate normalisation``."""

    centroids: np.ndarray
    shifts: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.centroids.ndim != 2 or self.shifts.shape != (len(self.centroids),):
            raise ValueError("one shift per centroid is needed")

    def shift(self, descriptors: np.ndarray) -> np.ndarray:
        """Each descriptor's cluster shift: (n,) for (n, dimension) unit vectors."""
        descriptors = np.atleast_2d(descriptors)
        if len(descriptors) == 0:
            return np.empty(0)
        return self.shifts[np.argmax(descriptors.astype(np.float64) @ self.centroids.T, axis=1)]

    @staticmethod
    def normalised(distances: np.ndarray, shift_a: np.ndarray, shift_b: np.ndarray) -> np.ndarray:
        """Normalised distances for raw ``distances`` between faces with shifts ``shift_a``
        and ``shift_b`` (numpy broadcasting: pairs, or (n, 1) against (1, m) for a matrix)."""
        squared = np.asarray(distances, dtype=np.float64) ** 2 + (shift_a + shift_b) / 2
        return np.sqrt(np.maximum(squared, 0.0))

    def raw_radius(self, normalised_radius: float, probe_shift: float) -> float:
        """The raw distance within which every face that can be within ``normalised_radius``
        of a probe lies, whatever its cluster: searches fetch that far, then normalise."""
        if math.isinf(normalised_radius):
            return math.inf
        squared = normalised_radius**2 - (probe_shift + float(self.shifts.min())) / 2
        return math.sqrt(max(squared, 0.0))

    def to_json(self) -> str:
        return json.dumps(
            {"centroids": self.centroids.round(7).tolist(), "shifts": self.shifts.tolist(), "provenance": self.provenance},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> "ScoreNormalisation":
        data = json.loads(text)
        return cls(
            centroids=np.array(data["centroids"], dtype=np.float64),
            shifts=np.array(data["shifts"], dtype=np.float64),
            provenance=data.get("provenance", {}),
        )

    @classmethod
    def load(cls, family: str) -> "ScoreNormalisation":
        """The shipped normalisation of model family ``family`` (``normalisation-<family>.json``)."""
        return cls.from_json(resources.files("facegate.engine").joinpath(f"normalisation-{family}.json").read_text())
