"""dlib's face detectors behind the ``FaceDetector`` interface.

HOG is the default: fast on a CPU and it releases the GIL. Its window is 80 px, so it
looks at every image enlarged (``hog_scan``) to find faces down to about 40 px. The MMOD
CNN detector finds more profile faces but costs seconds per image on a BLAS-less dlib
build, so it only looks when HOG finds nothing.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import dlib
import numpy as np
from PIL import Image

from facegate.engine.image import WORKING_PIXELS
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
"""Images whose longer side is at most this many pixels are upsampled twice over (dlib's
``pyramid_up``, in colour), so faces down to about 37 px are found: every labelled face
of ``dlib_faces`` (500 px photos), and the faces of UTKFace's and LFW's crops."""

LARGE_IMAGE_SCALE = 1.7
"""Larger images are scanned enlarged this many times, so that faces down to 40 px are
found in a 1920x1080 frame (issue 10; Rekognition documents 40 px there). A 40 px face
then fills 68 of the window's 80 px, which ``LARGE_IMAGE_THRESHOLD`` allows for.

Chosen with ``facegate evaluate detection`` on 648 faces of 40–60 px (UTKFace and LFW
photos pasted onto 1280x720 and 1920x1080 canvases), against DetectFaces' median CPU
time on those canvases before (no enlargement: 35% found). In grey, enlarged 2x: 97% at
2.2x (720p) to 2.6x (full HD) the time; 1.8x: 97% at 2.0x to 2.2x; 1.7x: 97% at 1.8x to
2.0x; 1.5x: 89%. Checked on 4,320 other such faces: 94.8% of those from UTKFace's tight
crops (90.3% at 40 px) and 99.3% of those from LFW, at 1.96x (720p) and 1.98x (full HD)
the CPU time: at the 2x budget. The cost is HOG's own: its pyramid's top levels hold most
of the pixels, so neither tiles nor a pyramid cut short at the original size save much."""

LARGE_IMAGE_THRESHOLD = -0.1
"""HOG's score threshold on enlarged large images (dlib's default is 0, confidence 88;
-0.1 is confidence 83): of the 40 px faces above, 95% are found instead of 93%. On 221
real photos over 800 px (CelebA, group photos) the enlarged scan adds 4 boxes that YuNet
does not confirm (3 at threshold 0, 8 at -0.2), and on the ``dlib_faces`` photos
enlarged 1.7 to 3.5 times, none."""

HOG_MAX_PIXELS = round(LARGE_IMAGE_SCALE**2 * WORKING_PIXELS)
"""The enlarged copy HOG scans holds at most this many pixels (6 MP, 6 MB in grey): an
image larger than the engine's working resolution is enlarged less, or reduced, to fit.
HOG's peak memory on a full-HD image rises from about 30 MB unenlarged to 60 MB."""


@dataclass(frozen=True)
class HogScan:
    """How HOG's first pass looks at an image.

    Images up to UPSAMPLE_MAX_SIDE: dlib doubles the colour image itself (``upsample`` 1),
    as when the calibration and the published figures were measured. Larger ones: a grey
    copy enlarged ``scale`` times. Grey because the scan's cost grows with the square of
    the enlargement, and dlib's HOG features (the strongest gradient of the three colour
    channels) cost 30% less on one channel, for 1% fewer of the 648 faces above (628
    against 633, enlarged 2x). Detections scoring under ``threshold`` are dropped.
    """

    upsample: int
    scale: float
    threshold: float

    @property
    def enlargement(self) -> float:
        return self.scale * 2**self.upsample


def hog_scan(width: int, height: int) -> HogScan:
    """The first pass for an image of ``width`` x ``height`` pixels."""
    if upsample_for(width, height):
        return HogScan(upsample=1, scale=1.0, threshold=0.0)
    scale = min(LARGE_IMAGE_SCALE, math.sqrt(HOG_MAX_PIXELS / (width * height)))
    return HogScan(upsample=0, scale=scale, threshold=LARGE_IMAGE_THRESHOLD)


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
    """How many times dlib should upsample an image of this size (0 or 1): once at most
    UPSAMPLE_MAX_SIDE. The padded retry, looking for a face that fills the frame, uses it
    as it is; the first pass enlarges larger images by its own scale (``hog_scan``)."""
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
        scan = hog_scan(width, height)
        if min(width, height) * scan.enlargement < HOG_WINDOW:
            return []
        detector = self._detector()
        found = self._first_pass(detector, pixels, scan)
        if found:
            return found
        upsample = upsample_for(width, height)
        size = retry_size(width, height)
        if size != (width, height):
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        offset = int(RETRY_PADDING * min(size))
        if (min(size) + 2 * offset) << upsample < HOG_WINDOW:
            return []
        padded = np.pad(pixels, ((offset, offset), (offset, offset), (0, 0)), mode="edge")
        rects, scores, _ = detector.run(padded, upsample, 0.0)
        scale = (size[0] / width, size[1] / height)
        return [_detection(rect, score, hog_confidence(score), offset, scale) for rect, score in zip(rects, scores)]

    @staticmethod
    def _first_pass(detector: dlib.fhog_object_detector, pixels: np.ndarray, scan: HogScan) -> list[Detection]:
        if scan.upsample:
            rects, scores, _ = detector.run(pixels, scan.upsample, scan.threshold)
            return [_detection(rect, score, hog_confidence(score)) for rect, score in zip(rects, scores)]
        height, width = pixels.shape[:2]
        image = Image.fromarray(pixels).convert("L")
        size = (max(1, round(width * scan.scale)), max(1, round(height * scan.scale)))
        if size != (width, height):
            image = image.resize(size, Image.Resampling.BILINEAR)
        rects, scores, _ = detector.run(np.asarray(image), 0, scan.threshold)
        scale = (size[0] / width, size[1] / height)
        return [_detection(rect, score, hog_confidence(score), scale=scale) for rect, score in zip(rects, scores)]


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
