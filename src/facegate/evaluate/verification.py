"""``facegate evaluate verification``: 1:1 error rates on a folder-per-identity photo set."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.face_models import DEFAULT_FACE_MODEL
from facegate.evaluate.calibration_fit import fit_calibration_from_pairs
from facegate.evaluate.datasets import Pairs, photos_by_folder, sample_pairs
from facegate.evaluate.labels import absolute
from facegate.evaluate.lfw_pairs import read_pairs
from facegate.evaluate.scoring import DescribedSet, describe_set
from facegate.evaluate.stats import equal_error_rate, error_rates, rate_at, threshold_for_fmr

REPORTED_SIMILARITIES = (80, 90, 95, 99)
CALIBRATED_DECISION = 50.0
"""Similarity 50 is where the calibration puts P(same) = P(different): its natural decision point."""


def _rate_json(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, Any]:
    r = rate_at(genuine, impostor, threshold)
    return {
        "fmr": r.fmr, "fmr_interval": list(r.fmr_interval), "false_matches": r.false_matches,
        "fnmr": r.fnmr, "fnmr_interval": list(r.fnmr_interval), "false_non_matches": r.false_non_matches,
    }


def verification_report(
    dataset_dir: Path, pairs_file: Path | None = None, max_genuine: int = 20_000, impostors: int = 100_000, seed: int = 0,
    fit_calibration: bool = False, model: str = DEFAULT_FACE_MODEL,
) -> tuple[dict[str, Any], dict[str, np.ndarray], SimilarityCalibration]:
    """The ``--json`` report, the raw scores (for plots) and the calibration they were scored with.

    With ``fit_calibration`` the calibration is first fitted on these very pairs (the same
    code path that produced the shipped one), and the report measures it in-sample."""
    if pairs_file is not None:
        listed = read_pairs(pairs_file)
        paths = sorted({str(absolute(dataset_dir / p)) for pair in listed for p in (pair.path_a, pair.path_b)})
        index = {p: i for i, p in enumerate(paths)}
        rows = [(index[str(absolute(dataset_dir / x.path_a))], index[str(absolute(dataset_dir / x.path_b))], x.same) for x in listed]
        pairs = Pairs(
            np.array([(a, b) for a, b, same in rows if same], dtype=np.int64).reshape(-1, 2),
            np.array([(a, b) for a, b, same in rows if not same], dtype=np.int64).reshape(-1, 2),
        )
        identities = len({Path(p).parent.name for p in paths})
    else:
        photos = photos_by_folder(dataset_dir)
        paths = [str(p) for p in photos]
        pairs = sample_pairs(list(photos.values()), max_genuine, impostors, seed)
        identities = len(set(photos.values()))
    described = describe_set(paths, "verification photos", model)
    if fit_calibration:
        distances = np.concatenate([described.distances(pairs.genuine), described.distances(pairs.impostor)])
        same = np.arange(len(distances)) < len(pairs.genuine)
        described = replace(described, calibration=fit_calibration_from_pairs(distances, same, described.model_version, str(dataset_dir)))
    genuine, impostor = described.similarities(pairs.genuine), described.similarities(pairs.impostor)
    report = _report(dataset_dir, described, identities, genuine, impostor, seed)
    return report, {"genuine": genuine, "impostor": impostor}, described.calibration


def _report(
    dataset_dir: Path, described: DescribedSet, identities: int, genuine: np.ndarray, impostor: np.ndarray, seed: int
) -> dict[str, Any]:
    eer, eer_threshold = equal_error_rate(genuine, impostor)
    fmr_default, fnmr_default = error_rates(genuine, impostor, CALIBRATED_DECISION)
    accuracy = 1 - (fmr_default * len(impostor) + fnmr_default * len(genuine)) / (len(impostor) + len(genuine))
    for_fmr = {}
    for target in (1e-3, 1e-4):
        threshold, resolvable = threshold_for_fmr(impostor, target)
        for_fmr[f"{target:g}"] = {"similarity": threshold, "resolvable": resolvable, "fnmr": error_rates(genuine, impostor, threshold)[1]}
    return {
        "dataset": str(dataset_dir),
        "photos": len(described.paths),
        "identities": identities,
        "detection_failures": len(described.failures),
        "undetected_photos": [str(Path(f.path).relative_to(absolute(dataset_dir))) for f in described.failures],
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "eer": eer,
        "eer_similarity": eer_threshold,
        "accuracy_at_calibrated_decision": accuracy,
        "calibrated_decision_similarity": CALIBRATED_DECISION,
        "at_similarity": {str(s): _rate_json(genuine, impostor, s) for s in REPORTED_SIMILARITIES},
        "similarity_for_fmr": for_fmr,
        "model_version": described.model_version,
        "calibration": {"slope": described.calibration.slope, "midpoint": described.calibration.midpoint},
        "seed": seed,
        "date": dt.date.today().isoformat(),
    }
