"""dlib's shape predictors behind the ``LandmarkModel`` and ``FaceDescriber`` interfaces.

The 5-point model (eye corners and the base of the nose) is what the ResNet's chips are
aligned with. The 68-point model is only used to report Rekognition's landmark list and
to estimate pose; it is trained on iBUG 300-W, whose licence excludes commercial use, so
only the ``dlib`` face model uses it.
"""

from __future__ import annotations

import dlib
import numpy as np

from facegate.engine.landmarks import rekognition_landmarks
from facegate.engine.model_files import SHAPE_5, SHAPE_68, model_path
from facegate.engine.pose import estimate_pose
from facegate.engine.results import Detection, PixelBox, Pose


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


class SixtyEightPointDescriber:
    """``FaceDescriber`` from the 68-point model: every Rekognition landmark type is a
    mean of iBUG points (``landmarks.py``) and the pose is fitted to six of them."""

    name = "dlib-68-point-ibug300w"

    def __init__(self) -> None:
        self._model = sixty_eight_point_model()

    def describe(
        self, pixels: np.ndarray, detection: Detection, points: np.ndarray
    ) -> tuple[dict[str, tuple[float, float]], Pose]:
        points68 = self._model.predict(pixels, detection.box)
        return rekognition_landmarks(points68), estimate_pose(points68)


def to_dlib_rect(box: PixelBox) -> dlib.rectangle:
    """Back to dlib's inclusive integer rectangle."""
    return dlib.rectangle(int(round(box.left)), int(round(box.top)), int(round(box.right)) - 1, int(round(box.bottom)) - 1)
