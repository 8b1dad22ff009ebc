"""Plain data the engine returns. Boxes and points are in pixels here; the service
layer converts them to Rekognition's ratios of image width and height."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelBox:
    """A face box in pixels; may extend past the image edge, as Rekognition's boxes may."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


@dataclass(frozen=True)
class Detection:
    """A detector's raw answer: the box, the detector's own score, and ``confidence`` on 0–100.

    ``keypoints`` are the five points a detector such as YuNet finds with the box, in
    pixels: eye centres, nose tip and mouth corners, each pair image-left first (the
    ArcFace order). Empty when the detector gives none (dlib's).
    """

    box: PixelBox
    score: float
    confidence: float
    keypoints: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees, each in [-180, 180].

    ``roll``: in-plane rotation, positive when the face is turned clockwise in the image.
    ``yaw``: positive when the face turns towards the image's right-hand side.
    ``pitch``: positive when the face tilts up.
    """

    roll: float
    yaw: float
    pitch: float


@dataclass(frozen=True)
class Quality:
    """Face-region image quality, each on 0–100 (higher is brighter / sharper)."""

    brightness: float
    sharpness: float


@dataclass(frozen=True)
class Face:
    """One analysed face.

    ``landmarks5`` are the 5-point model's pixel coordinates (used for alignment).
    ``landmarks`` maps Rekognition's landmark types to pixel (x, y); it is empty when the
    68-point model was not asked for. ``pose`` and ``quality`` are likewise optional.
    """

    detection: Detection
    landmarks5: np.ndarray
    landmarks: dict[str, tuple[float, float]]
    pose: Pose | None
    quality: Quality | None
