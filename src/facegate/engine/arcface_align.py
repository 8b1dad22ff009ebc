"""ArcFace-style aligned chips: five keypoints onto fixed positions in a 112x112 image.

SFace (like most ArcFace-trained networks) was trained on faces warped so that the eye
centres, nose tip and mouth corners land on the reference points below. This reproduces
OpenCV's ``FaceRecognizerSF::alignCrop``: the least-squares similarity transform
(Umeyama's: rotation, uniform scale and shift, no reflection) from the five keypoints to
the reference points, then a bilinear warp with black outside the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from facegate.engine.results import PixelBox

ARCFACE_SIZE = 112
"""Chip side, in pixels."""

ARCFACE_POINTS = np.array(
    [
        [38.2946, 51.6963],  # image-left eye centre
        [73.5318, 51.5014],  # image-right eye centre
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # image-left mouth corner
        [70.7299, 92.2041],  # image-right mouth corner
    ]
)
"""Where the five keypoints go in a 112x112 chip, (x, y) in pixels (the ArcFace template)."""


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of the similarity transform that best maps ``source`` (n, 2) onto
    ``target`` (n, 2) in least squares (Umeyama 1991). Degenerate sources give scale 0."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.array([1.0, -1.0 if np.linalg.det(covariance) < 0 else 1.0])
    rotation = u @ np.diag(signs) @ vt
    variance = (source_centred**2).sum() / len(source)
    scale = float(singular @ signs / variance) if variance > 1e-12 else 0.0
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def arcface_chips(pixels: np.ndarray, keypoints: list[np.ndarray]) -> np.ndarray:
    """One aligned chip per face: (n, 112, 112, 3) uint8, from (height, width, 3) uint8 RGB
    pixels and each face's five keypoints (5, 2) in those pixels, in ``ARCFACE_POINTS`` order."""
    chips = np.zeros((len(keypoints), ARCFACE_SIZE, ARCFACE_SIZE, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    for chip, points in zip(chips, keypoints):
        forward = similarity_transform(np.asarray(points, dtype=np.float64), ARCFACE_POINTS)
        if abs(np.linalg.det(forward[:, :2])) > 1e-12:
            size = (ARCFACE_SIZE, ARCFACE_SIZE)
            warped = image.transform(size, Image.Transform.AFFINE, _pillow_inverse(forward), Image.Resampling.BILINEAR)
            chip[:] = np.asarray(warped)
    return chips


class ArcFaceAligner:
    """``FaceAligner`` placing each face's five keypoints on ``ARCFACE_POINTS``; the box
    plays no part (the keypoints fix position, scale and rotation)."""

    name = "arcface-112"

    def chips(self, pixels: np.ndarray, faces: Sequence[tuple[PixelBox, np.ndarray]]) -> np.ndarray:
        return arcface_chips(pixels, [points for _, points in faces])


def _pillow_inverse(forward: np.ndarray) -> tuple[float, ...]:
    """Pillow's affine coefficients (chip pixel to image pixel) for the image-to-chip
    transform ``forward``. Pillow samples at pixel centres (x + 0.5), OpenCV at integers;
    the shift of ``0.5 - linear @ (0.5, 0.5)`` makes Pillow sample where ``warpAffine``
    does (measured: within one grey level of an exact float warp, 12 times faster)."""
    linear = np.linalg.inv(forward[:, :2])
    shift = -linear @ forward[:, 2] + 0.5 - linear @ np.array([0.5, 0.5])
    return (linear[0, 0], linear[0, 1], shift[0], linear[1, 0], linear[1, 1], shift[1])
