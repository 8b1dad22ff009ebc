"""dlib's face detectors behind the ``FaceDetector`` interface.

HOG is the default: fast on a CPU and it releases the GIL. The MMOD CNN detector finds
more profile and small faces but costs seconds per image on a BLAS-less dlib build.
"""

from __future__ import annotations

import math
import threading

import dlib
import numpy as np
from PIL import Image

from facegate.engine.interfaces import FaceDetector

from facegate.engine.model_files import MMOD, model_path
from facegate.engine.results import Detection, PixelBox

HOG_WINDOW = 80
"""dlib's frontal HOG detector scans an 80x80 window: smaller faces need upsampling, and an
image (after upsampling) with a side shorter than this holds no face HOG can find."""

RETRY_PADDING = 0.15
"""When HOG finds nothing, it looks again with the image edge-padded by this fraction of its
shorter side: the scanning window cannot sit on a face that fills the frame (tight crops,
ID photos). On UTKFace's 200 px crops this recovers 19 of 22 misses. The shorter side,
because a face can fill no more than that; padding by the longer side turned a 100x10000
strip into 40 megapixels."""

RETRY_SHORT_SIDE = 400
"""The padded retry looks at a copy whose shorter side is at most this many pixels. A face
that fills the frame is that large, five times HOG's window; on a large faceless image
the retry then costs a tenth of the first pass instead of more than it (1.7 times the
pixels). Photos up to 400 px on the shorter side (LFW, UTKFace) are retried as they are."""


def retry_size(width: int, height: int) -> tuple[int, int]:
    """The (width, height) of the copy the padded retry scans."""
    scale = min(1.0, RETRY_SHORT_SIDE / min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


UPSAMPLE_MAX_SIDE = 800
"""Images whose longer side is at most this many pixels are upsampled once, so faces down to
about 40 px are found; larger images are scanned as they are (faces from 80 px)."""


def hog_confidence(score: float) -> float:
    """Map a HOG detection score to 0–100: ``100 / (1 + exp(-4 * (score + 0.5)))``.

    Monotone in the score. dlib's default decision threshold (score 0) maps to 88; a
    typical clear frontal face (score 1 to 2) maps to 99.8 and above.
    """
    return 100.0 / (1.0 + math.exp(-4.0 * (score + 0.5)))


def mmod_confidence(score: float) -> float:
    """Map an MMOD CNN score to 0–100 with the same logistic shape as ``hog_confidence``."""
    return 100.0 / (1.0 + math.exp(-4.0 * (score + 0.5)))


def upsample_for(width: int, height: int) -> int:
    """How many times HOG should upsample an image of this size (0 or 1)."""
    return 1 if max(width, height) <= UPSAMPLE_MAX_SIDE else 0


class HogDetector:
    """dlib's frontal-face HOG + linear SVM detector.

    dlib's object_detector keeps scratch buffers inside the instance and releases the GIL
    while it runs, so two threads sharing one instance corrupt the heap (seen: double free
    under the server's thread pool). Each thread therefore gets its own instance; building
    one takes milliseconds, and the threads then really do run in parallel.
    """

    name = "dlib-hog"

    def __init__(self) -> None:
        self._per_thread = threading.local()

    def _detector(self) -> dlib.fhog_object_detector:
        detector = getattr(self._per_thread, "detector", None)
        if detector is None:
            detector = self._per_thread.detector = dlib.get_frontal_face_detector()
        return detector

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        height, width = pixels.shape[:2]
        upsample = upsample_for(width, height)
        if min(width, height) << upsample < HOG_WINDOW:
            return []
        detector = self._detector()
        rects, scores, _ = detector.run(pixels, upsample, 0.0)
        if rects:
            return [_detection(rect, score, hog_confidence(score)) for rect, score in zip(rects, scores)]
        size = retry_size(width, height)
        if size != (width, height):
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        offset = int(RETRY_PADDING * min(size))
        padded = np.pad(pixels, ((offset, offset), (offset, offset), (0, 0)), mode="edge")
        rects, scores, _ = detector.run(padded, upsample, 0.0)
        scale = (size[0] / width, size[1] / height)
        return [_detection(rect, score, hog_confidence(score), offset, scale) for rect, score in zip(rects, scores)]


MMOD_MAX_SIDE = 512
"""The CNN runs on a copy scaled to at most this many pixels on the longer side (upsampled
once below half of it): without BLAS it costs about 2 s at 500x500, and grows with area."""

MMOD_MIN_SIDE = 80
"""The CNN's detection window is 80x80 pixels (stored in the model file), so it is never
shown a shorter side: it finds no face there (of 15 LFW faces it finds 15 at 80 px, 6 at
60 px and none at 50 px), and below about 10 px dlib's tiled pyramid gives the
convolutions a negative offset and corrupts the heap (issue 9: a 100x10000 image, scaled
to 5x512, aborted the next detection with ``free(): invalid size``). A long strip is
scaled by its shorter side instead, within the same MMOD_MAX_SIDE squared pixels, which
covers aspect ratios up to 1:40; beyond that only HOG looks."""


def mmod_input(width: int, height: int) -> tuple[tuple[int, int], int] | None:
    """The (width, height) and upsampling at which the CNN should see an image, or None
    when it cannot at MMOD_MIN_SIDE within MMOD_MAX_SIDE squared pixels."""
    scale = min(1.0, MMOD_MAX_SIDE / max(width, height))
    if min(width, height) * scale < MMOD_MIN_SIDE:
        scale = min(1.0, MMOD_MIN_SIDE / min(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    upsample = 1 if max(size) <= MMOD_MAX_SIDE / 2 else 0
    if min(size) < MMOD_MIN_SIDE or size[0] * size[1] > MMOD_MAX_SIDE**2:
        return None
    return size, upsample


class MmodDetector:
    """dlib's MMOD CNN detector. The network keeps per-call state, hence the lock."""

    name = "dlib-mmod"

    def __init__(self) -> None:
        self._net = dlib.cnn_face_detection_model_v1(str(model_path(MMOD)))
        self._lock = threading.Lock()

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        height, width = pixels.shape[:2]
        geometry = mmod_input(width, height)
        if geometry is None:
            return []
        size, upsample = geometry
        if size != (width, height):
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        with self._lock:
            found = self._net(pixels, upsample)
        scale = (size[0] / width, size[1] / height)
        return [_detection(d.rect, d.confidence, mmod_confidence(d.confidence), scale=scale) for d in found]


class FallbackDetector:
    """Ask ``primary``; only when it finds nothing, ask ``fallback``.

    HOG then MMOD is the default: HOG is fast and finds frontal faces; the CNN rescues
    the rest (profiles, odd lighting). On the LFW development photos HOG misses 10 of
    3,074 and MMOD finds all 10; faceless images pay for both.
    """

    def __init__(self, primary: FaceDetector, fallback: FaceDetector) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}"

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        return self.primary.detect(pixels) or self.fallback.detect(pixels)


def _detection(
    rect: dlib.rectangle, score: float, confidence: float, offset: int = 0, scale: tuple[float, float] = (1.0, 1.0)
) -> Detection:
    # dlib rectangles are inclusive on the right and bottom edges; ``offset`` undoes padding
    # and ``scale`` (x, y) undoes resizing, so boxes are in the caller's pixels.
    box = PixelBox(
        (rect.left() - offset) / scale[0],
        (rect.top() - offset) / scale[1],
        (rect.right() + 1 - offset) / scale[0],
        (rect.bottom() + 1 - offset) / scale[1],
    )
    return Detection(box=box, score=float(score), confidence=confidence)
