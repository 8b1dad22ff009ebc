"""The ONNX model files facegate ships in ``engine/models/``, and the check that they are
the files we mean.

Weights decide every match, so a swapped or corrupted file must stop the engine, not
quietly change its answers. Each file is read whole, its SHA-256 compared with the digest
recorded here (and in ``models/NOTICE``), and the session is then built from those same
bytes, so nothing can change between the check and the use. Where the files came from and
under which licences is in ``models/NOTICE``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


@dataclass(frozen=True)
class VendoredModel:
    """One shipped model file: its name in ``MODELS_DIR``, SHA-256 (hex) and SPDX licence."""

    filename: str
    sha256: str
    licence: str


SFACE = VendoredModel(
    "face_recognition_sface_2021dec_int8bq.onnx",
    "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
    "Apache-2.0",
)
"""OpenCV Zoo's SFace recogniser (MobileFaceNet, 128-d), int8 block-quantised."""

YUNET = VendoredModel(
    "face_detection_yunet_2023mar_int8bq.onnx",
    "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    "MIT",
)
"""OpenCV Zoo's YuNet detector (box and five keypoints), int8 block-quantised."""


class ModelFileMismatch(Exception):
    """A shipped model file is missing or is not byte-identical to the one facegate ships:
    an installation error, never a client's."""


def verified_model_bytes(model: VendoredModel, directory: Path | None = None) -> bytes:
    """The file's bytes from ``directory`` (default ``MODELS_DIR``), after checking them
    against the recorded SHA-256."""
    path = (directory or MODELS_DIR) / model.filename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileMismatch(f"model file missing: {path}; reinstall facegate") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != model.sha256:
        raise ModelFileMismatch(
            f"model file {path} has SHA-256 {digest}, expected {model.sha256}; "
            "it is not the file facegate ships (see models/NOTICE), so it is not loaded"
        )
    return data
