"""The small interfaces that models sit behind.

Callers (the pipeline, the service) only see these protocols, so a face model is a
composition of parts: a detector, optionally a landmark model for the alignment points,
an aligner that cuts the chips the embedder was trained on, the embedder, and a describer
for Rekognition's landmarks and pose. ``face_models.py`` lists the compositions facegate
ships; a user can plug in another (an ONNX model they are licensed to use, say) without
touching anything above the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from facegate.engine.results import Detection, PixelBox, Pose


class FaceDetector(Protocol):
    """Finds faces in an upright RGB image, (height, width, 3) uint8."""

    name: str

    def detect(self, pixels: np.ndarray) -> list[Detection]: ...


class LandmarkModel(Protocol):
    """Predicts landmark pixel coordinates, (points, 2) float, for one face box."""

    name: str
    points: int

    def predict(self, pixels: np.ndarray, box: PixelBox) -> np.ndarray: ...


class FaceAligner(Protocol):
    """Cuts aligned chips, (n, size, size, 3) uint8 RGB, from an image and each face's
    (box, alignment points) in its pixels: the geometry the embedder was trained on."""

    name: str

    def chips(self, pixels: np.ndarray, faces: Sequence[tuple[PixelBox, np.ndarray]]) -> np.ndarray: ...


class FaceEmbedder(Protocol):
    """Maps aligned chips, (n, chip_size, chip_size, 3) uint8 RGB, to descriptors,
    (n, dimension) float32."""

    name: str
    dimension: int
    chip_size: int

    def embed(self, chips: np.ndarray) -> np.ndarray: ...


class FaceDescriber(Protocol):
    """Rekognition's 30 landmark types (pixel x, y) and the head pose of one face, from
    the image, the detection and the face's alignment points."""

    name: str

    def describe(
        self, pixels: np.ndarray, detection: Detection, points: np.ndarray
    ) -> tuple[dict[str, tuple[float, float]], Pose]: ...
