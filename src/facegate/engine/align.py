"""dlib-style aligned chips: the crop and warp dlib's ResNet was trained on.

dlib's ResNet expects 150x150 chips aligned from its 5-point landmarks (eye corners and
the base of the nose) by dlib's own similarity transform, padded by a fraction of the
face; reusing ``dlib.get_face_chips`` keeps us bit-for-bit on that convention rather
than approximating it.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlib
import numpy as np

from facegate.engine.dlib_landmarks import to_dlib_rect
from facegate.engine.results import PixelBox


class DlibChipAligner:
    """``FaceAligner`` for dlib's chips; ``padding`` is a fraction of the eye-to-mouth box
    (dlib's default 0.25; a smaller one is a tighter crop, used as a second view)."""

    def __init__(self, size: int, padding: float) -> None:
        self.size = size
        self.padding = padding
        self.name = f"dlib-chip-{size}-pad{padding:g}"

    def chips(self, pixels: np.ndarray, faces: Sequence[tuple[PixelBox, np.ndarray]]) -> np.ndarray:
        """Chips for each (box, 5-point landmarks) pair: (n, size, size, 3) uint8 RGB."""
        if not faces:
            return np.empty((0, self.size, self.size, 3), dtype=np.uint8)
        shapes = dlib.full_object_detections()
        for box, points in faces:
            parts = [dlib.point(int(round(x)), int(round(y))) for x, y in points]
            shapes.append(dlib.full_object_detection(to_dlib_rect(box), parts))
        chips = dlib.get_face_chips(pixels, shapes, size=self.size, padding=self.padding)
        return np.stack([np.asarray(chip, dtype=np.uint8) for chip in chips])
