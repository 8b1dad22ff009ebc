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


TIGHTER_CROP = 0.05
"""How much less padding the augmented second crop gets (dlib's padding is 0.25)."""


class FaceEngine:
    """Pure computation over decoded images; holds no per-request state."""

    def __init__(
        self,
        detector: FaceDetector,
        alignment_landmarks: LandmarkModel,
        full_landmarks: LandmarkModel,
        embedder: Callable[[], FaceEmbedder],
        calibration: SimilarityCalibration,
        augment: bool,
    ) -> None:
        self.detector = detector
        self.alignment_landmarks = alignment_landmarks
        self.full_landmarks = full_landmarks
        self.calibration = calibration
        self.augment = augment
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
        augment = "+tta4" if self.augment else ""
        return f"{self.embedder.name}{augment}+l2/{self.detector.name}"

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
        """Unit-length descriptors for ``faces`` of one image: (n, dimension) float32."""
        return self.embed_batch([(image, faces)])

    def embed_batch(self, items: Sequence[tuple[DecodedImage, Sequence[Face]]]) -> np.ndarray:
        """Descriptors for faces across several images in one embedder call (faster in bulk).

        With ``augment``, each face is described four times and the descriptors averaged:
        the model's own crop and one 0.05 tighter, each with its mirror image. Measured on
        LFW development photos (3,689 genuine, 200,000 impostor pairs): FNMR at FMR 1e-3
        falls from 8.2% (one crop) to 5.9%; it costs four network passes instead of one.
        Descriptors are then scaled to unit length, which on its own takes that FNMR from
        9.6% to 8.2%.
        """
        size, padding = self.embedder.chip_size, self.embedder.chip_padding
        paddings = (padding, padding - TIGHTER_CROP) if self.augment else (padding,)
        crops = [
            np.concatenate(
                [face_chips(image.pixels, [(f.detection.box, f.landmarks5) for f in faces], size, p) for image, faces in items]
            )
            for p in paddings
        ]
        count = len(crops[0])
        if count == 0:
            return np.empty((0, self.embedder.dimension), dtype=np.float32)
        views = crops + [c[:, :, ::-1] for c in crops] if self.augment else crops
        descriptors = self.embedder.embed(np.concatenate(views)).reshape(len(views), count, -1).mean(axis=0)
        return (descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)).astype(np.float32)

    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Euclidean distances between every row of ``a`` (n, d) and of ``b`` (m, d): (n, m)."""
        a64, b64 = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
        squared = (a64**2).sum(1)[:, None] + (b64**2).sum(1)[None, :] - 2.0 * a64 @ b64.T
        return np.sqrt(np.maximum(squared, 0.0))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Rekognition-scale similarity (0–100) between every row of ``a`` and of ``b``."""
        return self.calibration.similarity(self.distances(a, b))


@functools.cache
def load_engine(detector: str = "hog+mmod", embedder: str = "resnet", augment: bool = True) -> FaceEngine:
    """The process-wide engine for this configuration, loaded on first use.

    ``detector``: "hog+mmod" (HOG, with the CNN only when HOG finds nothing; the default),
    "hog" or "mmod". ``augment`` averages four views of each face (see ``embed_batch``). ``embedder``: "resnet" (dlib's weights on BLAS,
    the default) or "dlib" (dlib's own implementation, the slow reference).
    """
    from facegate.engine.dlib_detectors import FallbackDetector, HogDetector, MmodDetector
    from facegate.engine.dlib_landmarks import five_point_model, sixty_eight_point_model

    detectors: dict[str, Callable[[], FaceDetector]] = {
        "hog": HogDetector,
        "mmod": MmodDetector,
        "hog+mmod": lambda: FallbackDetector(HogDetector(), MmodDetector()),
    }
    if detector not in detectors:
        raise ValueError(f"unknown detector {detector!r}; choose from {sorted(detectors)}")
    return FaceEngine(
        detector=detectors[detector](),
        alignment_landmarks=five_point_model(),
        full_landmarks=sixty_eight_point_model(),
        embedder=functools.partial(_load_embedder, embedder),
        calibration=SimilarityCalibration.load(),
        augment=augment,
    )


def _load_embedder(name: str) -> FaceEmbedder:
    if name == "dlib":
        from facegate.engine.dlib_embedder import DlibResNetEmbedder

        return DlibResNetEmbedder()
    if name == "resnet":
        from facegate.engine.resnet import ResNetDescriptor

        return ResNetDescriptor()
    raise ValueError(f"unknown embedder {name!r}; choose from ['dlib', 'resnet']")
