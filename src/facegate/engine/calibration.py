"""Similarity on Rekognition's 0–100 scale, from descriptor distance.

``similarity(d) = 100 / (1 + exp(slope * (d - midpoint)))``: a logistic model of the
probability that two faces are the same person given their Euclidean descriptor
distance ``d``, under equal priors. It is strictly decreasing in ``d``, so every
similarity threshold is exactly one distance threshold (``distance_for``), which is how
the vector index applies ``FaceMatchThreshold``.

The parameters are fitted by ``facegate evaluate`` (one code path) and ship, one file
per face model, as ``calibration-<model>.json`` with their provenance and the error rates
measured at 80/90/95/99. A similarity only means something for the model it was fitted on.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

CALIBRATION_VARIABLE = "FACEGATE_CALIBRATION"


@dataclass(frozen=True)
class SimilarityCalibration:
    """A fitted logistic distance-to-similarity map. ``slope`` > 0; distances are Euclidean."""

    slope: float
    midpoint: float
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.slope > 0:
            raise ValueError("slope must be positive so that similarity falls as distance grows")

    def similarity(self, distance: np.ndarray | float) -> np.ndarray:
        """0–100, higher for closer descriptors."""
        z = np.clip(self.slope * (np.asarray(distance, dtype=np.float64) - self.midpoint), -700, 700)
        return 100.0 / (1.0 + np.exp(z))

    def distance_for(self, similarity: float) -> float:
        """The largest distance whose similarity is still >= ``similarity`` (0 < similarity < 100)."""
        if similarity <= 0:
            return math.inf
        if similarity >= 100:
            return 0.0
        return self.midpoint + math.log(100.0 / similarity - 1.0) / self.slope

    def to_json(self) -> str:
        return json.dumps({"slope": self.slope, "midpoint": self.midpoint, "provenance": self.provenance}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SimilarityCalibration":
        data = json.loads(text)
        return cls(slope=float(data["slope"]), midpoint=float(data["midpoint"]), provenance=data.get("provenance", {}))

    @classmethod
    def load(cls, model: str, version: str) -> "SimilarityCalibration":
        """Face model ``model``'s calibration: the file at ``$FACEGATE_CALIBRATION`` when it
        was fitted on this model's ``version`` (its provenance says so), else the shipped one.

        The variable lets an operator apply a calibration fitted on their own photos
        (``facegate evaluate verification --fit-calibration``) to every command at once,
        so the server and the evaluations never disagree about what a similarity means;
        other models keep theirs, because one model's distances mean nothing to another."""
        override = os.environ.get(CALIBRATION_VARIABLE)
        if override:
            fitted = cls.from_json(Path(override).read_text())
            if fitted.provenance.get("model_version") == version:
                return fitted
        return cls.from_json(resources.files("facegate.engine").joinpath(f"calibration-{model}.json").read_text())
