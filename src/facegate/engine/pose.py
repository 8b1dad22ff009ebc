"""Head pose from landmarks: a generic 3D face fitted under scaled orthographic projection.

Why this method: it needs no camera intrinsics (we never know the focal length of an
uploaded photo) and reduces to one least-squares solve and an SVD, so it is cheap and
deterministic. ``GenericHead`` does the fit for any rigid set of 3D reference points;
``estimate_pose`` uses the widely used generic head model for the 68-point layout's nose
tip, chin, outer eye corners and mouth corners (units are arbitrary, about 0.2 mm), and
``five_point_landmarks.estimate_pose_from_five`` a five-point model of its own.
"""

from __future__ import annotations

import math

import numpy as np

from facegate.engine.results import Pose


class GenericHead:
    """A rigid 3D face model, (n, 3) points with x to the image's right, y up and z
    towards the camera, that image points are fitted to."""

    def __init__(self, model_points: np.ndarray) -> None:
        centred = model_points - model_points.mean(axis=0)
        self._pinv = np.linalg.pinv(centred.T)  # (n, 3): solves M @ X = U for M

    def pose(self, image_points: np.ndarray) -> Pose:
        """Roll, yaw and pitch in degrees (see ``Pose`` for signs) from the model's points
        as seen in the image, (n, 2) pixels in the model's order."""
        image = np.asarray(image_points, dtype=np.float64).copy()
        image[:, 1] = -image[:, 1]  # image y points down; the model's y points up
        observed = (image - image.mean(axis=0)).T  # (2, n)
        projection = observed @ self._pinv  # (2, 3) = scale * first two rows of a rotation
        u, _, vt = np.linalg.svd(projection, full_matrices=False)
        rows = u @ vt  # nearest matrix with orthonormal rows
        rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
        # rotation = Rz(psi) @ Ry(theta) @ Rx(phi), camera = rotation @ model.
        theta = math.asin(max(-1.0, min(1.0, -rotation[2, 0])))
        psi = math.atan2(rotation[1, 0], rotation[0, 0])
        phi = math.atan2(rotation[2, 1], rotation[2, 2])
        return Pose(roll=-math.degrees(psi), yaw=math.degrees(theta), pitch=-math.degrees(phi))


# iBUG index -> generic 3D point.
_MODEL_INDICES = (30, 8, 36, 45, 48, 54)
_IBUG_HEAD = GenericHead(
    np.array(
        [
            (0.0, 0.0, 0.0),  # nose tip
            (0.0, -330.0, -65.0),  # chin
            (-225.0, 170.0, -135.0),  # outer corner of the image-left eye
            (225.0, 170.0, -135.0),  # outer corner of the image-right eye
            (-150.0, -150.0, -125.0),  # image-left mouth corner
            (150.0, -150.0, -125.0),  # image-right mouth corner
        ]
    )
)


def estimate_pose(points68: np.ndarray) -> Pose:
    """Roll, yaw and pitch in degrees from (68, 2) pixel landmarks (see ``Pose`` for signs)."""
    return _IBUG_HEAD.pose(points68[list(_MODEL_INDICES)])
