"""Similarity scores for pairs of photos, through the engine users get."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.score_normalisation import ScoreNormalisation
from facegate.engine.face_models import DEFAULT_FACE_MODEL, load_engine
from facegate.evaluate.describe import PhotoDescription, describe_photos


@dataclass(frozen=True)
class DescribedSet:
    """Descriptors for a photo list; rows of photos without a detected face are NaN."""

    paths: list[str]
    descriptors: np.ndarray
    failures: list[PhotoDescription]
    model_version: str
    calibration: SimilarityCalibration
    normalisation: ScoreNormalisation | None = None

    @property
    def detected(self) -> np.ndarray:
        return ~np.isnan(self.descriptors[:, 0])

    def distances(self, pairs: np.ndarray) -> np.ndarray:
        """The model's distance per pair (Euclidean between unit vectors, normalised when the
        model normalises scores); NaN where a photo has no face."""
        if len(pairs) == 0:
            return np.empty(0)
        a, b = self.descriptors[pairs[:, 0]], self.descriptors[pairs[:, 1]]
        raw = np.sqrt(np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", a, b), 0.0))
        if self.normalisation is None:
            return raw
        shift_a, shift_b = (self.normalisation.shift(np.nan_to_num(x)) for x in (a, b))
        return self.normalisation.normalised(raw, shift_a, shift_b)

    def similarities(self, pairs: np.ndarray) -> np.ndarray:
        """Similarity (0–100) per pair; a pair with an undetected photo scores 0 (a non-match)."""
        distance = self.distances(pairs)
        return np.where(np.isnan(distance), 0.0, self.calibration.similarity(np.nan_to_num(distance, nan=2.0)))


def describe_set(paths: Sequence[str], label: str, model: str = DEFAULT_FACE_MODEL) -> DescribedSet:
    engine = load_engine(model)
    described = describe_photos(list(paths), model, policy="largest", label=label)
    dimension = engine.embedder.dimension
    matrix = np.array([d.descriptor if d.descriptor is not None else np.full(dimension, np.nan) for d in described])
    return DescribedSet(
        paths=list(paths),
        descriptors=matrix.reshape(len(paths), dimension),
        failures=[d for d in described if d.descriptor is None],
        model_version=engine.model_version,
        calibration=engine.calibration,
        normalisation=engine.normalisation,
    )
