"""The peer pipeline, exactly as the ``face_recognition`` README uses it.

HOG detection with one upsample, the 5-point ("small") landmark model and one jitter:
``face_recognition.face_encodings(face_recognition.load_image_file(path))``. It is a
bench-only dependency (installed by ``make bench`` with ``--no-deps``).
"""

from __future__ import annotations

import numpy as np


def peer_describe(path: str) -> np.ndarray | None:
    """The first face's encoding, as a README user would take it, or None without a face."""
    import face_recognition

    image = face_recognition.load_image_file(path)
    encodings = face_recognition.face_encodings(image, num_jitters=1, model="small")
    return np.asarray(encodings[0], dtype=np.float32) if encodings else None
