"""Aligned face chips: the crop and warp the embedder was trained on.

dlib's ResNet expects 150x150 chips aligned from the 5-point landmarks by dlib's own
similarity transform; reusing ``dlib.get_face_chips`` keeps us bit-for-bit on that
convention rather than approximating it.
"""

from __future__ import annotations

import dlib
import numpy as np

from facegate.engine.dlib_landmarks import to_dlib_rect
from facegate.engine.results import PixelBox


def face_chips(
    pixels: np.ndarray, faces: list[tuple[PixelBox, np.ndarray]], size: int, padding: float
) -> np.ndarray:
    """Chips for each (box, 5-point landmarks) pair: (n, size, size, 3) uint8 RGB."""
    if not faces:
        return np.empty((0, size, size, 3), dtype=np.uint8)
    shapes = dlib.full_object_detections()
    for box, points in faces:
        parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
        shapes.append(dlib.full_object_detection(to_dlib_rect(box), parts))
    chips = dlib.get_face_chips(pixels, shapes, size=size, padding=padding)
    return np.stack([np.asarray(chip, dtype=np.uint8) for chip in chips])
