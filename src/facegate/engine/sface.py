"""OpenCV Zoo's SFace recogniser behind the ``FaceEmbedder`` interface, on onnxruntime.

SFace is a MobileFaceNet trained with the sigmoid-constrained hypersphere loss; it maps a
112x112 ArcFace-aligned chip (``arcface_align.arcface_chips``, not dlib's chipper) to 128
numbers. Inputs follow OpenCV's ``FaceRecognizerSF::feature``, which is handed a BGR chip
and swaps it, so the network sees RGB 0–255, unscaled: the graph subtracts 127.5 and
multiplies by 1/128 itself. Descriptors are compared by cosine similarity; scaled to unit
length, cosine = 1 - d²/2 for their Euclidean distance d, so the engine's distance-based
calibration applies unchanged.
"""

from __future__ import annotations

import numpy as np

from facegate.engine.arcface_align import ARCFACE_SIZE
from facegate.engine.onnx_session import inference_session
from facegate.engine.vendored_models import SFACE, verified_model_bytes

BATCH = 16
"""Chips per network call: batching amortises the per-call overhead; more only adds memory."""


class SFaceEmbedder:
    """``FaceEmbedder`` for SFace 2021dec (int8 weights, run as float32).

    The session is shared by all threads; each call uses one core.
    """

    name = "opencv-sface-2021dec"
    dimension = 128
    chip_size = ARCFACE_SIZE

    def __init__(self) -> None:
        self._session = inference_session(verified_model_bytes(SFACE), free_dims={0: "batch"})
        self._input = self._session.get_inputs()[0].name

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Unit-length descriptors (n, 128) float32 for (n, 112, 112, 3) uint8 RGB chips."""
        if len(chips) == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        outputs = []
        for start in range(0, len(chips), BATCH):
            batch = chips[start : start + BATCH].transpose(0, 3, 1, 2).astype(np.float32)
            outputs.append(self._session.run(None, {self._input: batch})[0])
        descriptors = np.concatenate(outputs)
        return (descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)).astype(np.float32)
