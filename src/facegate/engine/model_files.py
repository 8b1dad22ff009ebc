"""Where the bundled dlib model files live: inside the installed ``face_recognition_models``.

We find the package directory with ``importlib`` instead of importing it, because its
``__init__`` depends on ``pkg_resources``, which modern setuptools no longer ships.
Nothing is ever downloaded: a missing file is an installation error.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SHAPE_5 = "shape_predictor_5_face_landmarks.dat"
SHAPE_68 = "shape_predictor_68_face_landmarks.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"
MMOD = "mmod_human_face_detector.dat"


def model_path(filename: str) -> Path:
    """Absolute path of one of the bundled model files; raises FileNotFoundError if absent."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face_recognition_models is not installed; run `make test` or `make serve`")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise FileNotFoundError(f"bundled model file missing: {path}")
    return path
