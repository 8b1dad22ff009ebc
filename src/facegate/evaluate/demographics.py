"""``facegate evaluate demographics``: error rates per demographic group, NIST-style.

Every group is scored at the same global thresholds (the one giving FMR 1e-3 over all
impostor pairs, and similarity 80 and 99), because that is how a deployment runs: one
threshold for everyone. Impostor pairs are drawn within each group, as NIST does (a
same-group impostor is the hard case). FNMR needs identities with two or more photos,
so it is null where a dataset has one photo per person (UTKFace). Groups too small for
a meaningful rate are flagged, never hidden.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.face_models import DEFAULT_FACE_MODEL
from facegate.evaluate.datasets import identities_from_manifest, sample_pairs
from facegate.evaluate.labels import LabelledPhoto, read_labels
from facegate.evaluate.scoring import describe_set
from facegate.evaluate.stats import error_rates, ratio_to_lowest, threshold_for_fmr, wilson_interval

MIN_IDENTITIES = 20
MIN_GENUINE_PAIRS = 30
AGE_BANDS = ((18, 30, "18-29"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 200, "60+"))


def _age_band(value: str) -> str | None:
    try:
        age = int(float(value))
    except ValueError:
        return None
    return next((name for low, high, name in AGE_BANDS if low <= age < high), None)


def group_columns(photos: list[LabelledPhoto]) -> dict[str, dict[int, str]]:
    """attribute -> {photo index: group}, for each attribute and for race×gender."""
    columns: dict[str, dict[int, str]] = {}
    for index, photo in enumerate(photos):
        for attribute, value in photo.attributes.items():
            group = _age_band(value) if attribute == "age" else value
            if group is not None and attribute != "identity":
                columns.setdefault(attribute, {})[index] = group
        if "race" in photo.attributes and "gender" in photo.attributes:
            columns.setdefault("race×gender", {})[index] = f"{photo.attributes['race']}×{photo.attributes['gender']}"
    return {a: g for a, g in columns.items() if len(set(g.values())) >= 2}


def demographics_report(
    dataset_dir: Path, labels_tsv: Path, impostors_per_group: int = 20_000, max_genuine: int = 20_000, seed: int = 0,
    model: str = DEFAULT_FACE_MODEL,
) -> tuple[dict[str, Any], dict[str, dict[str, dict[str, np.ndarray]]]]:
    photos = read_labels(labels_tsv, under=dataset_dir)
    if not photos:
        raise ValueError(f"no photo in {labels_tsv} lies under {dataset_dir}")
    known = identities_from_manifest(labels_tsv)
    identities = [known.get(p.path, p.path.parent.name) for p in photos]
    described = describe_set([str(p.path) for p in photos], "demographic photos", model)
    detected = described.detected

    everyone = sample_pairs(identities, max_genuine, impostors_per_group * 2, seed)
    global_threshold, resolvable = threshold_for_fmr(described.similarities(everyone.impostor), 1e-3)
    thresholds = {"fmr_1e-3": global_threshold, "80": 80.0, "99": 99.0}

    groups, scores = [], {}
    for attribute, membership in group_columns(photos).items():
        scores[attribute] = {}
        entries = []
        for group in sorted(set(membership.values())):
            members = [i for i, g in membership.items() if g == group]
            pairs = sample_pairs([identities[i] for i in members], max_genuine, impostors_per_group, seed)
            lookup = np.array(members)
            genuine = described.similarities(lookup[pairs.genuine]) if len(pairs.genuine) else np.empty(0)
            impostor = described.similarities(lookup[pairs.impostor]) if len(pairs.impostor) else np.empty(0)
            scores[attribute][group] = {"genuine": genuine, "impostor": impostor}
            entry = _group_entry(attribute, group, members, identities, detected, genuine, impostor, thresholds)
            entries.append(entry)
        for key in ("fmr", "fnmr"):
            ratios = ratio_to_lowest({e["group"]: e[key] if e[key] is not None else float("nan") for e in entries})
            for entry in entries:
                entry[f"{key}_ratio_to_lowest"] = ratios[entry["group"]]
        groups += entries
    report = {
        "dataset": str(dataset_dir),
        "labels": str(labels_tsv),
        "photos": len(photos),
        "identities": len(set(identities)),
        "detection_failures": int((~detected).sum()),
        "thresholds": thresholds,
        "global_threshold_resolvable": resolvable,
        "groups": groups,
        "model_version": described.model_version,
        "calibration": {"slope": described.calibration.slope, "midpoint": described.calibration.midpoint},
        "seed": seed,
        "date": dt.date.today().isoformat(),
    }
    return report, scores


def _group_entry(
    attribute: str, group: str, members: list[int], identities: list[str], detected: np.ndarray,
    genuine: np.ndarray, impostor: np.ndarray, thresholds: dict[str, float],
) -> dict[str, Any]:
    people = {identities[i] for i in members}
    at = {}
    for name, threshold in thresholds.items():
        fmr, fnmr = error_rates(genuine, impostor, threshold)
        at[name] = {"fmr": _or_none(fmr), "fnmr": _or_none(fnmr)}
    primary = at["fmr_1e-3"]
    false_matches = int((impostor >= thresholds["fmr_1e-3"]).sum())
    false_non_matches = int((genuine < thresholds["fmr_1e-3"]).sum())
    return {
        "attribute": attribute,
        "group": group,
        "n_photos": len(members),
        "n_identities": len(people),
        "detection_failure_rate": float(1 - detected[members].mean()),
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "fmr": primary["fmr"],
        "fmr_interval": list(wilson_interval(false_matches, len(impostor))) if len(impostor) else None,
        "fnmr": primary["fnmr"],
        "fnmr_interval": list(wilson_interval(false_non_matches, len(genuine))) if len(genuine) else None,
        "at": at,
        "small_sample": len(people) < MIN_IDENTITIES or (0 < len(genuine) < MIN_GENUINE_PAIRS),
    }


def _or_none(value: float) -> float | None:
    return None if np.isnan(value) else float(value)
