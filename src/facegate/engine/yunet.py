"""OpenCV Zoo's YuNet face detector behind the ``FaceDetector`` interface, on onnxruntime.

YuNet predicts, on grids of stride 8, 16 and 32 pixels, a face score (class times
objectness), a box and five keypoints (eye centres, nose tip, mouth corners). Pre- and
post-processing follow OpenCV's ``FaceDetectorYN``: BGR pixels 0–255 unscaled, padded with
black on the right and bottom to a multiple of 32; a cell's score is
``sqrt(clip(cls) * clip(obj))``; boxes are decoded around the cell and then thinned by
non-maximum suppression. Faces between about 10 and 300 pixels are what it was trained on,
so a large image is also looked at scaled down, for faces that fill it.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from facegate.engine.onnx_session import inference_session
from facegate.engine.results import Detection, PixelBox
from facegate.engine.vendored_models import YUNET, verified_model_bytes

STRIDES = (8, 16, 32)
"""The detection grids' strides, in input pixels; the input must be a multiple of the last."""

SCORE_THRESHOLD = 0.7
"""Cells scoring below this (0–1) are not faces. OpenCV Zoo's demo uses 0.9, which misses
5 of 807 LFW development photos and 5 of the 43 labelled faces in dlib_faces; at 0.7 none
of those nor of 500 UTKFace photos is missed, and dlib_faces shows no false box (at 0.6
it shows one, at 0.5 three)."""

NMS_THRESHOLD = 0.3
"""Boxes overlapping a better one by more than this IoU are dropped (OpenCV Zoo's value)."""

MAX_PIXELS = 1920 * 1088
"""The full-resolution pass sees at most this many pixels (a padded full-HD frame, about
75 ms on one core); a larger image is scaled down to it first.

The engine's working images (at most 1920x1080) are thus scanned at full resolution, and
that finds faces down to 40 px (issue 10): of faces of 40–60 px pasted onto 1280x720 and
1920x1080 canvases by ``facegate evaluate detection``, 97.2% of 2,160 from UTKFace and
99.9% of 2,160 from LFW. No enlarged pass is added: on 648 such faces one at 1.5x found
99.1% instead of 96.9%, at 3.4 times the median time, with four boxes on ``dlib_faces``
photos that the labels lack (at 2x, 99.7% at 10 times the time)."""

LARGE_FACE_SIDE = 320
"""Faces fill at most this many pixels at the second, reduced pass: images whose shorter
side is longer are also scanned scaled so that side is this long, because YuNet misses
faces much over 300 px."""


class YuNetDetector:
    """``FaceDetector`` for YuNet 2023mar (int8 weights, run as float32).

    One ``onnxruntime`` session is shared by all threads (its ``run`` is thread-safe and
    releases the GIL), each call using one core (see ``onnx_session.INTRA_OP_THREADS``).
    """

    name = "opencv-yunet-2023mar"

    def __init__(self, score_threshold: float = SCORE_THRESHOLD) -> None:
        self._session = inference_session(verified_model_bytes(YUNET), free_dims={2: "height", 3: "width"})
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in STRIDES]
        self.score_threshold = score_threshold

    def detect(self, pixels: np.ndarray) -> list[Detection]:
        """Faces in an RGB image (height, width, 3) uint8, boxes and keypoints in its pixels."""
        height, width = pixels.shape[:2]
        found = [self._scan(pixels, scale) for scale in pass_scales(width, height)]
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        points = np.concatenate([f[2] for f in found])
        return [
            Detection(
                box=PixelBox(*map(float, boxes[i])),
                score=float(scores[i]),
                confidence=yunet_confidence(float(scores[i])),
                keypoints=tuple((float(x), float(y)) for x, y in points[i]),
            )
            for i in non_maximum_suppression(boxes, scores, NMS_THRESHOLD)
        ]

    def _scan(self, pixels: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates at one scale: boxes (n, 4) as left, top, right, bottom, scores (n,) and
        keypoints (n, 5, 2), all in the caller's pixels."""
        height, width = pixels.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if size != (width, height):
            pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR))
        padded_h, padded_w = (_multiple_of(side, STRIDES[-1]) for side in pixels.shape[:2])
        blob = np.zeros((1, 3, padded_h, padded_w), dtype=np.float32)
        blob[0, :, : pixels.shape[0], : pixels.shape[1]] = pixels[:, :, ::-1].transpose(2, 0, 1)
        outputs = dict(zip(self._outputs, self._session.run(self._outputs, {self._input: blob})))
        boxes, scores, points = [], [], []
        for stride in STRIDES:
            cols = padded_w // stride
            score = np.sqrt(
                np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1) * np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
            )
            cells = np.flatnonzero(score >= self.score_threshold)
            origin = np.stack([cells % cols, cells // cols], axis=1).astype(np.float32)
            bbox = outputs[f"bbox_{stride}"][0, cells]
            centre = (origin + bbox[:, :2]) * stride
            half = np.exp(bbox[:, 2:]) * stride / 2
            boxes.append(np.concatenate([centre - half, centre + half], axis=1))
            points.append((outputs[f"kps_{stride}"][0, cells].reshape(-1, 5, 2) + origin[:, None, :]) * stride)
            scores.append(score[cells])
        unscale = (size[0] / width, size[1] / height)
        return (
            np.concatenate(boxes) / np.tile(unscale, 2),
            np.concatenate(scores),
            np.concatenate(points) / unscale,
        )


def yunet_confidence(score: float) -> float:
    """Map a YuNet score (0–1) to Rekognition's 0–100: ``100 / (1 + exp(-22 * (score - 0.61)))``.

    Monotone in the score and shaped like dlib's ``hog_confidence``, so both models speak
    the same scale: the decision threshold (0.7) maps to 88, and a clear frontal face
    (score 0.85 and up) to 99.5 and above, as Rekognition reports such faces. Callers
    that filter on ``Confidence`` (90 and 99 are common) then keep the faces they expect.
    """
    return 100.0 / (1.0 + math.exp(-22.0 * (score - 0.61)))


def pass_scales(width: int, height: int) -> list[float]:
    """The scales YuNet looks at an image at: full resolution (capped at MAX_PIXELS), and
    for an image whose shorter side exceeds LARGE_FACE_SIDE, also reduced to that side."""
    scales = [min(1.0, math.sqrt(MAX_PIXELS / (width * height)))]
    if min(width, height) > LARGE_FACE_SIDE:
        scales.append(LARGE_FACE_SIDE / min(width, height))
    return scales


def non_maximum_suppression(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of the boxes (n, 4: left, top, right, bottom) to keep, best score first:
    each box overlapping an already kept one by more than ``threshold`` IoU is dropped."""
    order = list(np.argsort(-scores, kind="stable"))
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    keep: list[int] = []
    while order:
        best, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(int(best))
        if rest.size == 0:
            break
        overlap_w = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0])
        overlap_h = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1])
        overlap = np.maximum(overlap_w, 0) * np.maximum(overlap_h, 0)
        iou = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = list(rest[iou <= threshold])
    return keep


def _multiple_of(value: int, divisor: int) -> int:
    return (value + divisor - 1) // divisor * divisor
