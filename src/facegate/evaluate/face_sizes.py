"""Recall by face size for one detector, on hand-labelled photos and on generated canvases.

Every image goes through ``decode_image`` as an upload does, then the detector; the
seconds that takes are kept, so the report gives each set's median latency beside its
recall (single-threaded, in this process: compare detectors in the same run).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from facegate.engine.dlib_detectors import HogDetector
from facegate.engine.interfaces import FaceDetector
from facegate.evaluate.canvases import Canvas, canvases, face_sources
from facegate.evaluate.detection import MIN_IOU, SIZE_BINS, ImageOutcome, LabelledImage, detect_image, summarise


def labelled_outcomes(detector: FaceDetector, photos: Sequence[LabelledImage]) -> list[ImageOutcome]:
    """``detector`` on each hand-labelled photo (every face labelled, so unmatched boxes are false)."""
    return [detect_image(detector, photo.path.read_bytes(), photo.boxes) for photo in photos]


def canvas_outcomes(detector: FaceDetector, made: Sequence[Canvas]) -> list[ImageOutcome]:
    """``detector`` on each canvas, sent as JPEG. False boxes are those on the background,
    outside the pasted cut-outs, and are not counted on group photos."""
    return [
        detect_image(detector, c.jpeg(), c.boxes, complete=not c.background.startswith("group"), unlabelled=c.pasted)
        for c in made
    ]


def make_canvases(
    photos: Sequence[Path], group_photos: Sequence[Path], sample: int, seed: int = 0
) -> tuple[list[Canvas], int]:
    """Canvases from a seeded sample of ``sample`` single-face ``photos`` (truth boxes by
    dlib's HOG, see ``canvases.py``), and how many photos served as face sources."""
    chosen = random.Random(seed).sample(list(photos), min(sample, len(photos)))
    reference = HogDetector()
    sources = face_sources(chosen, reference)
    return list(canvases(sources, group_photos, reference, seed=seed)), len(sources)


def size_report(
    detector: FaceDetector,
    labelled: Sequence[LabelledImage] = (),
    made: Sequence[Canvas] = (),
    face_sources_used: int = 0,
    groups: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Recall overall and by ``SIZE_BINS``, false boxes and median seconds per image, for the
    labelled photos and for the canvases (also by canvas size, pasted face side and
    background, and, given ``groups`` (source photo path to group), recall by group: a
    detector's small-face recall can differ between groups as its large-face recall does)."""
    report: dict[str, Any] = {
        "detector": detector.name,
        "size_bins": [label for label, _, _ in SIZE_BINS],
        "min_iou": MIN_IOU,
    }
    if labelled:
        report["labelled"] = summarise(labelled_outcomes(detector, labelled))
    if made:
        outcomes = canvas_outcomes(detector, made)
        report["canvases"] = {
            **summarise(outcomes),
            "face_sources": face_sources_used,
            "by_canvas_size": _by(outcomes, made, lambda c: f"{c.pixels.shape[1]}x{c.pixels.shape[0]}"),
            "by_face_side": _by(outcomes, made, lambda c: str(c.face_side)),
            "by_background": _by(outcomes, made, lambda c: c.background),
        }
        if groups:
            report["canvases"]["by_group"] = _by_group(outcomes, made, groups)
    return report


def _by(outcomes: Sequence[ImageOutcome], made: Sequence[Canvas], key: Callable[[Canvas], str]) -> dict[str, Any]:
    """``summarise`` per value of ``key``, in the order the canvases were made."""
    groups: dict[str, list[ImageOutcome]] = {}
    for outcome, canvas in zip(outcomes, made):
        groups.setdefault(key(canvas), []).append(outcome)
    return {name: summarise(group) for name, group in groups.items()}


def _by_group(outcomes: Sequence[ImageOutcome], made: Sequence[Canvas], groups: Mapping[str, str]) -> dict[str, Any]:
    """Faces, recall and recall by size per group of the photos the faces came from."""
    per_group: dict[str, list[ImageOutcome]] = {}
    for outcome, canvas in zip(outcomes, made):
        for group in dict.fromkeys(groups[o] for o in canvas.origins if o in groups):
            truth = [box for box, origin in zip(outcome.truth, canvas.origins) if groups.get(origin) == group]
            per_group.setdefault(group, []).append(ImageOutcome(truth, outcome.detected, outcome.seconds))
    summaries = {group: summarise(members) for group, members in sorted(per_group.items())}
    return {group: {key: s[key] for key in ("faces", "recall", "recall_by_size")} for group, s in summaries.items()}
