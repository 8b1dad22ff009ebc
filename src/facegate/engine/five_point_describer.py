"""Rekognition's landmarks and pose from a detector's five keypoints, for models that
must not depend on dlib's 68-point model (whose iBUG 300-W training data is licensed for
non-commercial use only). How each landmark type is measured or derived is documented
in ``five_point_landmarks.py``."""

from __future__ import annotations

import numpy as np

from facegate.engine.five_point_landmarks import estimate_pose_from_five, landmarks_from_five
from facegate.engine.results import Detection, Pose


class FivePointDescriber:
    """``FaceDescriber`` over the alignment keypoints (eye centres, nose tip, mouth corners)."""

    name = "five-point-geometry"

    def describe(
        self, pixels: np.ndarray, detection: Detection, points: np.ndarray
    ) -> tuple[dict[str, tuple[float, float]], Pose]:
        return landmarks_from_five(points), estimate_pose_from_five(points)
