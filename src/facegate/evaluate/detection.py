"""Detection recall and precision against hand-labelled boxes (dlib's imglab XML format).

A detection matches a labelled face when their intersection-over-union is at least
``MIN_IOU``. Detectors frame faces differently (HOG boxes are tighter than most hand
labels), so the bar is deliberately loose: 0.3, as in dlib's own face-box evaluations.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from facegate.engine.results import PixelBox

MIN_IOU = 0.3


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    boxes: list[PixelBox]
    landmarks: list[list[tuple[float, float]]]


@dataclass(frozen=True)
class DetectionScore:
    labelled: int
    detected: int
    true_positives: int

    @property
    def recall(self) -> float:
        return self.true_positives / self.labelled if self.labelled else 1.0

    @property
    def precision(self) -> float:
        return self.true_positives / self.detected if self.detected else 1.0


def read_imglab(xml_path: Path, images_dir: Path) -> list[LabelledImage]:
    """Images (found in ``images_dir``), boxes and, when present, landmark parts from imglab XML."""
    root = ET.parse(xml_path).getroot()
    images = []
    for node in root.iter("image"):
        boxes, parts = [], []
        for box in node.iter("box"):
            if box.get("ignore") == "1":
                continue
            left, top = float(box.get("left", 0)), float(box.get("top", 0))
            boxes.append(PixelBox(left, top, left + float(box.get("width", 0)), top + float(box.get("height", 0))))
            named = sorted(box.iter("part"), key=lambda p: int(p.get("name", 0)))
            parts.append([(float(p.get("x", 0)), float(p.get("y", 0))) for p in named])
        images.append(LabelledImage(images_dir / node.get("file", ""), boxes, parts))
    return images


def iou(a: PixelBox, b: PixelBox) -> float:
    inter = PixelBox(max(a.left, b.left), max(a.top, b.top), min(a.right, b.right), min(a.bottom, b.bottom)).area
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def score_detections(labelled: list[PixelBox], detected: list[PixelBox]) -> DetectionScore:
    """Greedy one-to-one matching, best overlaps first."""
    candidates = sorted(
        ((iou(t, d), i, j) for i, t in enumerate(labelled) for j, d in enumerate(detected)), reverse=True
    )
    used_truth: set[int] = set()
    used_detection: set[int] = set()
    for overlap, i, j in candidates:
        if overlap < MIN_IOU:
            break
        if i not in used_truth and j not in used_detection:
            used_truth.add(i)
            used_detection.add(j)
    return DetectionScore(len(labelled), len(detected), len(used_truth))


def detection_rates_by_group(
    photos: list[tuple[str, int]], groups: dict[str, str]
) -> dict[str, dict[str, float | int]]:
    """Per-group detection on single-face crops, from (path, faces found) pairs.

    Every crop holds exactly one face, so a photo with at least one detection counts
    towards recall, and any detection beyond the first is a false positive.
    """
    out: dict[str, dict[str, float | int]] = {}
    for group in sorted(set(groups.values())):
        found = [n for path, n in photos if groups.get(path) == group]
        hits = sum(1 for n in found if n > 0)
        detections = sum(found)
        out[group] = {
            "photos": len(found),
            "recall": hits / len(found) if found else float("nan"),
            "precision": hits / detections if detections else float("nan"),
        }
    return out
