"""Head pose from 68 landmarks: a generic 3D face fitted under scaled orthographic projection.

Why this method: it needs no camera intrinsics (we never know the focal length of an
uploaded photo) and reduces to one least-squares solve and an SVD, so it is cheap and
deterministic. The 3D reference points are the widely used generic head model for
nose tip, chin, outer eye corners and mouth corners (units are arbitrary).
"""

from __future__ import annotations

import math

import numpy as np

from facegate.engine.results import Pose

# iBUG index -> generic 3D point: x to the image's right, y up, z towards the camera.
_MODEL_INDICES = (30, 8, 36, 45, 48, 54)
_MODEL_POINTS = np.array(
    [
        (0.0, 0.0, 0.0),  # nose tip
        (0.0, -330.0, -65.0),  # chin
        (-225.0, 170.0, -135.0),  # outer corner of the image-left eye
        (225.0, 170.0, -135.0),  # outer corner of the image-right eye
        (-150.0, -150.0, -125.0),  # image-left mouth corner
        (150.0, -150.0, -125.0),  # image-right mouth corner
    ]
)
_MODEL_CENTERED = _MODEL_POINTS - _MODEL_POINTS.mean(axis=0)
_MODEL_PINV = np.linalg.pinv(_MODEL_CENTERED.T)  # (6, 3): solves M @ X = U for M


def estimate_pose(points68: np.ndarray) -> Pose:
    """Roll, yaw and pitch in degrees from (68, 2) pixel landmarks (see ``Pose`` for signs)."""
    image = points68[list(_MODEL_INDICES)].astype(np.float64)
    image[:, 1] = -image[:, 1]  # image y points down; the model's y points up
    observed = (image - image.mean(axis=0)).T  # (2, 6)
    projection = observed @ _MODEL_PINV  # (2, 3) = scale * first two rows of a rotation
    u, _, vt = np.linalg.svd(projection, full_matrices=False)
    rows = u @ vt  # nearest matrix with orthonormal rows
    rotation = np.vstack([rows, np.cross(rows[0], rows[1])])
    # rotation = Rz(psi) @ Ry(theta) @ Rx(phi), camera = rotation @ model.
    theta = math.asin(max(-1.0, min(1.0, -rotation[2, 0])))
    psi = math.atan2(rotation[1, 0], rotation[0, 0])
    phi = math.atan2(rotation[2, 1], rotation[2, 2])
    return Pose(roll=-math.degrees(psi), yaw=math.degrees(theta), pitch=-math.degrees(phi))
