"""dlib's shape predictors behind the ``LandmarkModel`` interface.

The 5-point model (eye corners and the base of the nose) is what the ResNet's chips are
aligned with. The 68-point model is only used to report Rekognition's landmark list and
to estimate pose; it is trained on iBUG 300-W, whose licence excludes commercial use.
"""

from __future__ import annotations

import dlib
import numpy as np

from facegate.engine.model_files import SHAPE_5, SHAPE_68, model_path
from facegate.engine.results import PixelBox


class ShapePredictor:
    """A dlib regression-tree landmark model; prediction is read-only, so thread-safe."""

    def __init__(self, filename: str, name: str, points: int) -> None:
        self._predictor = dlib.shape_predictor(str(model_path(filename)))
        self.name = name
        self.points = points

    def predict(self, pixels: np.ndarray, box: PixelBox) -> np.ndarray:
        shape = self._predictor(pixels, to_dlib_rect(box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def five_point_model() -> ShapePredictor:
    return ShapePredictor(SHAPE_5, "dlib-5-point", 5)


def sixty_eight_point_model() -> ShapePredictor:
    return ShapePredictor(SHAPE_68, "dlib-68-point-ibug300w", 68)


def to_dlib_rect(box: PixelBox) -> dlib.rectangle:
    """Back to dlib's inclusive integer rectangle."""
    return dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)) - 1, int(round(box.bottom)) - 1)
