"""The small interfaces that models sit behind.

Callers (the pipeline, the service) only see these protocols, so a user can plug in a
different detector or embedder — an ONNX model they are licensed to use, say — without
touching anything above the engine.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from facegate.engine.results import Detection, PixelBox


class FaceDetector(Protocol):
    """Finds faces in an upright RGB image, (height, width, 3) uint8."""

    name: str

    def detect(self, pixels: np.ndarray) -> list[Detection]: ...


class LandmarkModel(Protocol):
    """Predicts landmark pixel coordinates, (points, 2) float, for one face box."""

    name: str
    points: int

    def predict(self, pixels: np.ndarray, box: PixelBox) -> np.ndarray: ...


class FaceEmbedder(Protocol):
    """Maps aligned face chips to descriptors.

    ``chip_size`` and ``chip_padding`` tell the aligner what chips the model was trained
    on (dlib's convention: padding is a fraction of the eye-to-mouth face box).
    ``embed`` takes (n, chip_size, chip_size, 3) uint8 RGB and returns (n, dimension) float32.
    """

    name: str
    dimension: int
    chip_size: int
    chip_padding: float

    def embed(self, chips: np.ndarray) -> np.ndarray: ...
