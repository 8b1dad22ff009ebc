"""dlib's own ResNet descriptor, as the reference embedder.

It is correct by definition but slow on dlib-bin (no BLAS: ~100 ms per face) and its
network object keeps per-call state, so calls are serialised with a lock. The engine's
default is the BLAS port in ``resnet.py``; this class is what that port is tested against.
"""

from __future__ import annotations

import threading

import dlib
import numpy as np

from facegate.engine.model_files import RESNET, model_path


class DlibResNetEmbedder:
    """``FaceEmbedder`` backed by ``dlib.face_recognition_model_v1``."""

    name = "dlib-resnet-v1"
    dimension = 128
    chip_size = 150

    def __init__(self) -> None:
        self._model = dlib.face_recognition_model_v1(str(model_path(RESNET)))
        self._lock = threading.Lock()

    def embed(self, chips: np.ndarray) -> np.ndarray:
        if len(chips) == 0:
            return np.empty((0, self.dimension), dtype=np.float32)
        with self._lock:
            descriptors = self._model.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
        return np.array([np.asarray(d) for d in descriptors], dtype=np.float32)
