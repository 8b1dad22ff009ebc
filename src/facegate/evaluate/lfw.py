"""The LFW verification protocol through facegate's engine.

Each photo named by the pairs file is described once (the face nearest the centre, as
LFW intends). Accuracy is k-fold: each fold's threshold is chosen on the other folds.
A pair whose photo has no detectable face scores similarity 0 — counted, not dropped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.calibration import SimilarityCalibration
from facegate.evaluate.describe import describe_photos
from facegate.evaluate.lfw_pairs import read_pairs
from facegate.evaluate.stats import error_rates, kfold_accuracy

REPORTED_SIMILARITIES = (80, 90, 95, 99)
"""Rekognition's default (80), our intermediate steps, and its public-safety guidance (99)."""


@dataclass
class LfwResult:
    """Pair-level outcome: Euclidean distances (NaN where a face was missing) and labels."""

    distances: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    photos: int
    photos_without_face: list[str] = field(default_factory=list)


def describe_lfw(pairs_file: Path, images_dir: Path, model: str, workers: int | None = None) -> LfwResult:
    pairs = read_pairs(pairs_file)
    unique = sorted({p for pair in pairs for p in (pair.path_a, pair.path_b)})
    descriptions = describe_photos(
        [str(images_dir / p) for p in unique], model, policy="center", workers=workers, label="LFW photos"
    )
    by_path = {p: d.descriptor for p, d in zip(unique, descriptions)}
    distances = np.array(
        [
            np.nan
            if by_path[pair.path_a] is None or by_path[pair.path_b] is None
            else float(np.linalg.norm(by_path[pair.path_a] - by_path[pair.path_b]))
            for pair in pairs
        ]
    )
    return LfwResult(
        distances=distances,
        same=np.array([pair.same for pair in pairs]),
        folds=np.array([pair.fold for pair in pairs]),
        photos=len(unique),
        photos_without_face=[p for p in unique if by_path[p] is None],
    )


def lfw_report(result: LfwResult, calibration: SimilarityCalibration, model_version: str) -> dict[str, Any]:
    """The ``facegate evaluate lfw --json`` object (documented in the README)."""
    similarity = np.where(np.isnan(result.distances), 0.0, calibration.similarity(np.nan_to_num(result.distances)))
    accuracy, accuracy_std, per_fold = kfold_accuracy(similarity, result.same, result.folds)
    genuine, impostor = similarity[result.same], similarity[~result.same]
    fmr, fnmr = {}, {}
    for level in REPORTED_SIMILARITIES:
        fmr[str(level)], fnmr[str(level)] = (float(r) for r in error_rates(genuine, impostor, level))
    return {
        "pairs": int(len(similarity)),
        "folds": int(len(np.unique(result.folds))),
        "accuracy": float(accuracy),
        "accuracy_std": float(accuracy_std),
        "accuracy_per_fold": [float(a) for a in per_fold],
        "fmr": fmr,
        "fnmr": fnmr,
        "genuine_pairs": int(result.same.sum()),
        "impostor_pairs": int((~result.same).sum()),
        "photos": result.photos,
        "photos_without_face": len(result.photos_without_face),
        "pairs_without_face": int(np.isnan(result.distances).sum()),
        "model_version": model_version,
        "calibration": {"slope": calibration.slope, "midpoint": calibration.midpoint},
        "date": dt.date.today().isoformat(),
    }
