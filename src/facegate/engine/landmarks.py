"""Rekognition's landmark types, computed from the iBUG 68-point layout.

"Left" and "right" follow the image, as Rekognition's responses do: ``eyeLeft`` is the
eye nearer the image's left edge. Indices below are iBUG 300-W's, 0-based. Rekognition's
pupils are approximated by the eye-contour centroid; the 68-point model has no pupil.
"""

from __future__ import annotations

import numpy as np

# Each landmark type is the mean of these 68-point indices.
_FROM_68: dict[str, tuple[int, ...]] = {
    "eyeLeft": (36, 37, 38, 39, 40, 41),
    "eyeRight": (42, 43, 44, 45, 46, 47),
    "nose": (30,),
    "mouthLeft": (48,),
    "mouthRight": (54,),
    "leftEyeBrowLeft": (17,),
    "leftEyeBrowRight": (21,),
    "leftEyeBrowUp": (19,),
    "rightEyeBrowLeft": (22,),
    "rightEyeBrowRight": (26,),
    "rightEyeBrowUp": (24,),
    "leftEyeLeft": (36,),
    "leftEyeRight": (39,),
    "leftEyeUp": (37, 38),
    "leftEyeDown": (40, 41),
    "rightEyeLeft": (42,),
    "rightEyeRight": (45,),
    "rightEyeUp": (43, 44),
    "rightEyeDown": (46, 47),
    "noseLeft": (31,),
    "noseRight": (35,),
    "mouthUp": (51,),
    "mouthDown": (57,),
    "leftPupil": (36, 37, 38, 39, 40, 41),
    "rightPupil": (42, 43, 44, 45, 46, 47),
    "upperJawlineLeft": (0,),
    "midJawlineLeft": (4,),
    "chinBottom": (8,),
    "midJawlineRight": (12,),
    "upperJawlineRight": (16,),
}

LANDMARK_TYPES: tuple[str, ...] = tuple(_FROM_68)


def rekognition_landmarks(points68: np.ndarray) -> dict[str, tuple[float, float]]:
    """Map (68, 2) pixel coordinates to Rekognition's landmark types, in pixels."""
    if points68.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmark coordinates, got {points68.shape}")
    return {
        name: (float(points68[list(idx), 0].mean()), float(points68[list(idx), 1].mean()))
        for name, idx in _FROM_68.items()
    }
