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

import functools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from facegate.engine.arcface_align import ARCFACE_SIZE
from facegate.engine.onnx_session import inference_session
from facegate.engine.vendored_models import SFACE, verified_model_bytes

BATCH = 16
"""Most chips per network call. Batching barely pays on CPU (two chips in one call take 1.96
times one chip's time), so this only bounds a call's memory."""

CHIP_THREADS = len(os.sched_getaffinity(0))
"""Threads ``embed`` spreads chips over: one per core this process may use."""


class SFaceEmbedder:
    """``FaceEmbedder`` for SFace 2021dec (int8 weights, run as float32).

    The session is shared by all threads. ``embed`` spreads its chips over one thread per
    core (``_chip_pool``), each network call on one core: a lone request's face and its
    mirror image are described at once, in one chip's time (16.5 ms) rather than two.
    Under load the work is the same, only queued on that pool, which also keeps the
    network from being run on more threads than there are cores.
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
        pool = _chip_pool()
        size = min(BATCH, math.ceil(len(chips) / CHIP_THREADS))
        descriptors = np.concatenate(list(pool.map(self._run, [chips[i : i + size] for i in range(0, len(chips), size)])))
        return (descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)).astype(np.float32)

    def _run(self, chips: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: chips.transpose(0, 3, 1, 2).astype(np.float32)})[0]


@functools.cache
def _chip_pool() -> ThreadPoolExecutor:
    """Made on first use, so in each worker process, never inherited."""
    return ThreadPoolExecutor(max_workers=CHIP_THREADS, thread_name_prefix="sface")
