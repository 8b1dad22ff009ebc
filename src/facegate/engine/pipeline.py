"""The engine's front: decode, detect, describe, embed, compare.

``FaceEngine`` composes the pluggable models; ``load_engine`` builds one per process per
configuration and caches it, because loading the dlib models costs about a second and
every model here is safe to share between threads.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence

import numpy as np

from facegate.engine.align import face_chips
from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.image import DecodedImage
from facegate.engine.interfaces import FaceDetector, FaceEmbedder, LandmarkModel
from facegate.engine.landmarks import rekognition_landmarks
from facegate.engine.pose import estimate_pose
from facegate.engine.quality import measure_quality
from facegate.engine.results import Face


class FaceEngine:
    """Pure computation over decoded images; holds no per-request state."""

    def __init__(
        self,
        detector: FaceDetector,
        alignment_landmarks: LandmarkModel,
        full_landmarks: LandmarkModel,
        embedder: Callable[[], FaceEmbedder],
        calibration: SimilarityCalibration,
        flip_fusion: bool,
    ) -> None:
        self.detector = detector
        self.alignment_landmarks = alignment_landmarks
        self.full_landmarks = full_landmarks
        self.calibration = calibration
        self.flip_fusion = flip_fusion
        self._embedder_factory = embedder
        self._embedder: FaceEmbedder | None = None
        self._embedder_lock = threading.Lock()

    @property
    def embedder(self) -> FaceEmbedder:
        """Loaded on first use: detection-only work never pays for the descriptor network."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = self._embedder_factory()
            return self._embedder

    @property
    def model_version(self) -> str:
        """Names everything that shapes a descriptor; stored with each indexed face."""
        flip = "+flip" if self.flip_fusion else ""
        return f"{self.embedder.name}{flip}/{self.detector.name}"

    def detect(self, image: DecodedImage, *, details: bool = True) -> list[Face]:
        """Faces, largest first. With ``details``, also 68-point landmarks, pose and quality."""
        pixels = image.pixels
        detections = sorted(self.detector.detect(pixels), key=lambda d: d.box.area, reverse=True)
        faces = []
        for detection in detections:
            landmarks5 = self.alignment_landmarks.predict(pixels, detection.box)
            if details:
                points68 = self.full_landmarks.predict(pixels, detection.box)
                faces.append(
                    Face(
                        detection=detection,
                        landmarks5=landmarks5,
                        landmarks=rekognition_landmarks(points68),
                        pose=estimate_pose(points68),
                        quality=measure_quality(pixels, detection.box),
                    )
                )
            else:
                faces.append(Face(detection=detection, landmarks5=landmarks5, landmarks={}, pose=None, quality=None))
        return faces

    def embed(self, image: DecodedImage, faces: Sequence[Face]) -> np.ndarray:
        """Descriptors for ``faces`` of one image: (n, dimension) float32."""
        return self.embed_batch([(image, faces)])

    def embed_batch(self, items: Sequence[tuple[DecodedImage, Sequence[Face]]]) -> np.ndarray:
        """Descriptors for faces across several images in one embedder call (faster in bulk)."""
        size, padding = self.embedder.chip_size, self.embedder.chip_padding
        chip_sets = [
            face_chips(image.pixels, [(f.detection.box, f.landmarks5) for f in faces], size, padding)
            for image, faces in items
        ]
        chips = np.concatenate(chip_sets) if chip_sets else np.empty((0, size, size, 3), np.uint8)
        if len(chips) == 0:
            return np.empty((0, self.embedder.dimension), dtype=np.float32)
        if not self.flip_fusion:
            return self.embedder.embed(chips)
        # Mirror fusion: average the descriptors of each chip and its mirror image.
        both = self.embedder.embed(np.concatenate([chips, chips[:, :, ::-1]]))
        return (both[: len(chips)] + both[len(chips) :]) / 2.0

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distances between every row of ``a`` (n, d) and of ``b`` (m, d): (n, m)."""
        a64, b64 = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
        squared = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2.0 * a64 @ b64.T
        return np.sqrt(np.maximum(squared, 0.0))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Rekognition-scale similarity (0–100) between every row of ``a`` and of ``b``."""
        return self.calibration.similarity(self.distances(a, b))


@functools.cache
def load_engine(detector: str = "hog", embedder: str = "resnet", flip_fusion: bool = False) -> FaceEngine:
    """The process-wide engine for this configuration, loaded on first use.

    ``detector``: "hog" (default) or "mmod". ``embedder``: "resnet" (dlib's weights on BLAS,
    the default) or "dlib" (dlib's own implementation, the slow reference).
    """
    from facegate.engine.dlib_detectors import HogDetector, MmodDetector
    from facegate.engine.dlib_landmarks import five_point_model, sixty_eight_point_model

    detectors = {"hog": HogDetector, "mmod": MmodDetector}
    if detector not in detectors:
        raise ValueError(f"unknown detector {detector!r}; choose from {sorted(detectors)}")
    return FaceEngine(
        detector=detectors[detector](),
        alignment_landmarks=five_point_model(),
        full_landmarks=sixty_eight_point_model(),
        embedder=functools.partial(_load_embedder, embedder),
        calibration=SimilarityCalibration.load(),
        flip_fusion=flip_fusion,
    )


def _load_embedder(name: str) -> FaceEmbedder:
    if name == "dlib":
        from facegate.engine.dlib_embedder import DlibResNetEmbedder

        return DlibResNetEmbedder()
    if name == "resnet":
        from facegate.engine.resnet import ResNetDescriptor

        return ResNetDescriptor()
    raise ValueError(f"unknown embedder {name!r}; choose from ['dlib', 'resnet']")
