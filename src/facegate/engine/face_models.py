"""The face models facegate ships, and the one engine per model per process.

A face model is a fixed composition of detector, alignment, descriptor network,
landmark/pose describer and calibration. Its ``version`` is Rekognition's
``FaceModelVersion``: every collection records the version it was created with and is
indexed and searched with that model for life, because descriptors from different
models are not comparable. Moving a collection to another model means indexing its
images again into a new collection, as with Rekognition.

- ``sface`` (the default): OpenCV Zoo's YuNet detector (MIT) and SFace descriptor
  (Apache-2.0), vendored in ``models/``; landmarks and pose from YuNet's five points.
  Redistributable for commercial use.
- ``dlib``: dlib's HOG detector with its CNN as fallback, its 5-point landmarks and ResNet
  descriptor (from ``face_recognition_models``). Its landmarks and pose come from dlib's
  68-point model, trained on iBUG 300-W, which is licensed for non-commercial use only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

from facegate.engine.calibration import SimilarityCalibration
from facegate.engine.interfaces import FaceDescriber
from facegate.engine.pipeline import FaceEngine
from facegate.engine.score_normalisation import ScoreNormalisation

DEFAULT_FACE_MODEL = "sface"
FACE_MODEL_VARIABLE = "FACEGATE_FACE_MODEL"


@dataclass(frozen=True)
class FaceModel:
    """One shipped face model: its CLI ``name``, ``version`` (``FaceModelVersion``), and
    what an operator must know before choosing it."""

    name: str
    version: str
    licence: str
    commercial_use: bool
    build: Callable[[str, str, ScoreNormalisation | None], FaceEngine]
    normalised_from: str | None = None
    """For a ``-fsn`` model: the family whose shipped ``normalisation-<family>.json`` it applies."""


def _sface(name: str, version: str, normalisation: ScoreNormalisation | None) -> FaceEngine:
    from facegate.engine.arcface_align import ArcFaceAligner
    from facegate.engine.sface import SFaceEmbedder
    from facegate.engine.yunet import YuNetDetector

    return FaceEngine(
        name=name,
        version=version,
        detector=YuNetDetector(),
        alignment_landmarks=None,
        describer=_five_point_describer,
        aligners=(ArcFaceAligner(),),
        mirror=True,
        embedder=SFaceEmbedder,
        calibration=SimilarityCalibration.load(name, version),
        normalisation=normalisation,
    )


def _dlib(name: str, version: str, normalisation: ScoreNormalisation | None) -> FaceEngine:
    from facegate.engine.align import DlibChipAligner
    from facegate.engine.dlib_detectors import FallbackDetector, HogDetector, MmodDetector
    from facegate.engine.dlib_landmarks import five_point_model
    from facegate.engine.resnet import CHIP_SIZE, ResNetDescriptor

    return FaceEngine(
        name=name,
        version=version,
        detector=FallbackDetector(HogDetector(), MmodDetector()),
        alignment_landmarks=five_point_model(),
        describer=_sixty_eight_point_describer,
        aligners=(DlibChipAligner(CHIP_SIZE, 0.25), DlibChipAligner(CHIP_SIZE, 0.20)),
        mirror=True,
        embedder=ResNetDescriptor,
        calibration=SimilarityCalibration.load(name, version),
        normalisation=normalisation,
    )


def _five_point_describer() -> FaceDescriber:
    from facegate.engine.five_point_describer import FivePointDescriber

    return FivePointDescriber()


def _sixty_eight_point_describer() -> FaceDescriber:
    from facegate.engine.dlib_landmarks import SixtyEightPointDescriber

    return SixtyEightPointDescriber()


_SFACE = "opencv-sface-2021dec+flip+l2{}/opencv-yunet-2023mar"
_DLIB = "dlib-resnet-v1+tta4+l2{}/dlib-hog+dlib-mmod"  # predates the registry: older collections carry it
_SFACE_LICENCE = "Apache-2.0 (SFace), MIT (YuNet)"
_DLIB_LICENCE = "Boost (dlib), CC0 (ResNet, 5-point); 68-point: iBUG 300-W, non-commercial"

FACE_MODELS: dict[str, FaceModel] = {
    model.name: model
    for model in (
        FaceModel("sface", _SFACE.format(""), _SFACE_LICENCE, True, _sface),
        FaceModel("sface-fsn", _SFACE.format("+fsn"), _SFACE_LICENCE, True, _sface, normalised_from="sface"),
        FaceModel("dlib", _DLIB.format(""), _DLIB_LICENCE, False, _dlib),
        FaceModel("dlib-fsn", _DLIB.format("+fsn"), _DLIB_LICENCE, False, _dlib, normalised_from="dlib"),
    )
}
"""Every model also comes normalised (``-fsn``): label-free score normalisation
(``score_normalisation.py``) applied before its own calibration."""

FACE_MODEL_FAMILIES = tuple(name for name, model in FACE_MODELS.items() if model.normalised_from is None)
"""The models with their own networks; each ``-fsn`` model shares its family's detections and descriptors."""


class UnknownFaceModel(ValueError):
    """A model name or ``FaceModelVersion`` this installation does not ship."""


def configured_face_model() -> str:
    """``$FACEGATE_FACE_MODEL`` (set by ``facegate serve --face-model``), else the default."""
    return os.environ.get(FACE_MODEL_VARIABLE) or DEFAULT_FACE_MODEL


@functools.cache
def load_engine(name: str = DEFAULT_FACE_MODEL) -> FaceEngine:
    """The process-wide engine for face model ``name``, built on first use (models are
    safe to share between threads; loading them costs up to a second)."""
    model = FACE_MODELS.get(name)
    if model is None:
        raise UnknownFaceModel(f"unknown face model {name!r}; choose from {sorted(FACE_MODELS)}")
    normalisation = ScoreNormalisation.load(model.normalised_from) if model.normalised_from else None
    return model.build(model.name, model.version, normalisation)


def engine_for_version(version: str) -> FaceEngine:
    """The engine that made faces of ``FaceModelVersion`` ``version``."""
    for model in FACE_MODELS.values():
        if model.version == version:
            return load_engine(model.name)
    raise UnknownFaceModel(f"face model version {version!r} is not available in this installation")
