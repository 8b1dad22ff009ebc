"""Rekognition's ``QualityFilter``: which detected faces are good enough to use.

Each level is a set of minimums on what the engine measures. ``AUTO`` is ``MEDIUM``;
``NONE`` keeps every face. The first failing check names the Rekognition ``Reason``.
Sharpness and brightness are the engine's 0–100 scores; on LFW photos the median
sharpness is about 39, and a 3 px blur drives faces under 8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from facegate.engine.results import Face
from facegate.service import exceptions


@dataclass(frozen=True)
class QualityBar:
    min_confidence: float
    min_sharpness: float
    min_brightness: float
    max_brightness: float
    max_abs_yaw_or_pitch: float
    min_face_pixels: float


QUALITY_BARS: dict[str, QualityBar] = {
    "LOW": QualityBar(50.0, 2.0, 5.0, 99.0, 75.0, 20.0),
    "MEDIUM": QualityBar(80.0, 5.0, 10.0, 97.0, 60.0, 40.0),
    "HIGH": QualityBar(95.0, 15.0, 20.0, 93.0, 45.0, 50.0),
}
QUALITY_BARS["AUTO"] = QUALITY_BARS["MEDIUM"]


def rejection_reasons(face: Face, level: str) -> list[str]:
    """Rekognition ``Reasons`` why ``face`` fails ``level``; empty when it passes (always for NONE)."""
    bar = QUALITY_BARS.get(level)
    if bar is None:
        return []
    reasons = []
    box = face.detection.box
    if min(box.width, box.height) < bar.min_face_pixels:
        reasons.append("SMALL_BOUNDING_BOX")
    if face.detection.confidence < bar.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if face.pose is not None and max(abs(face.pose.yaw), abs(face.pose.pitch)) > bar.max_abs_yaw_or_pitch:
        reasons.append("EXTREME_POSE")
    if face.quality is not None:
        if face.quality.sharpness < bar.min_sharpness:
            reasons.append("LOW_SHARPNESS")
        if not bar.min_brightness <= face.quality.brightness <= bar.max_brightness:
            reasons.append("LOW_BRIGHTNESS")
    return reasons


def usable_faces(faces: list[Face], params: dict[str, Any], default: str = "NONE", field: str = "") -> list[Face]:
    """The detected ``faces`` that pass the request's ``QualityFilter`` (``default`` when it
    sent none). None is Rekognition's ``InvalidParameterException``, whose message says
    truly why: no face at all, or faces that the filter rejected, and for what."""
    prefix = f"{field}: " if field else ""
    if not faces:
        raise exceptions.InvalidParameterException(f"{prefix}There are no faces in the image. Should be at least 1.")
    level = params.get("QualityFilter", default)
    kept = [face for face in faces if not rejection_reasons(face, level)]
    if not kept:
        reasons = sorted({reason for face in faces for reason in rejection_reasons(face, level)})
        raise exceptions.InvalidParameterException(
            f"{prefix}There are no faces in the image that pass QualityFilter {level}: "
            f"{len(faces)} found, rejected for {', '.join(reasons)}."
        )
    return kept
