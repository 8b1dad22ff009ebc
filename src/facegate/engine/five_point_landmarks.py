"""Rekognition's 30 landmark types and the head pose from a detector's five keypoints.

A model that must not use dlib's 68-point shape predictor (trained on iBUG 300-W, licensed
for non-commercial use only) still owes ``DetectFaces`` all 30 landmark types and a pose.
Its detector (YuNet) gives five keypoints: the eye centres, the nose tip and the mouth
corners, image-left first. "Left" and "right" follow the image, as in ``landmarks.py``.

**Measured** (7 types): ``eyeLeft``, ``eyeRight``, ``nose``, ``mouthLeft`` and
``mouthRight`` are the keypoints themselves; ``leftPupil`` and ``rightPupil`` are the eye
centres again (the detector's eye point is the centre of the visible eye, which is where
the pupil is in a face looking at the camera).

**Derived** (the other 23): each is a fixed offset from its nearest measured point, in the
face's own frame, so it turns and scales with the face:

- *across* is the vector from the image-left eye centre to the image-right one (one
  interocular distance, IOD, about 63 mm in adults);
- *down* is the vector from the point between the eyes to the point between the mouth
  corners (one eye-to-mouth drop; YuNet's keypoints put it at a median 1.0 IOD, so it too
  is about 63 mm);
- *depth* is how far the nose tip sits to the side of the line down the middle of the
  face, measured along *across*. The nose tip stands about 25 mm in front of the plane of
  the eyes and mouth corners, so when the head turns it moves sideways against them, and
  a point at another depth moves in proportion to its own depth. Depths are in units of
  the nose tip's (1 = 25 mm in front of the eye plane, negative = behind it). Only the
  sideways shift is applied: the nose's height between eyes and mouth differs as much from
  person to person as with pitch, and applying it made the points worse.

A derived point is ``anchor + a * across + d * down + (z - z_anchor) * depth`` with the
numbers in ``_DERIVED`` (1 unit of *across* or *down* is about 63 mm; 1 unit of depth 25 mm).
They are adult proportions from anthropometric norms (Farkas, *Anthropometry of the Head
and Face*, 1994, rounded) and simple geometry:

- eye corners 13 mm either side of the eye centre, the outer 1 mm and the inner 2.5 mm
  below it (canthal tilt; the detector's eye point is on the iris, above the corners'
  line); lids 3 mm above and 4.5 mm below it;
- brows from 6 mm inside the inner eye corner (16 mm above the eye line) to 12 mm past
  the outer one (13 mm above), their top 23 mm above the eye line, 5 mm outside its centre;
- nostril wings 14 mm either side of the nose tip and 6 mm below it;
- the lips' midline 3 mm above and 16 mm below the line of the mouth corners (the corners
  sit above the lips' meeting line in most photographs); the chin's lowest point 48 mm
  below that line;
- the face's outline 67 mm either side of the middle just below eye level (half the
  bizygomatic width) and 57 mm either side 72 mm below the eye line (just below the mouth);
- depths: nostril wings and lip midline half as far forward as the nose tip; the brow's
  head 10 mm in front of the eye plane and its tail 10 mm behind; the outer eye corner 5 mm
  behind; the outline 37 mm behind at eye level and 25 mm below the mouth (the silhouette
  a turned head shows).

No number was fitted automatically to a landmark model's output. dlib's 68-point model was
used to *measure* the template, and where a first anthropometric estimate was off by more than
about 0.05 IOD it was moved by hand to the round figure above: the eye fissure from 30 mm
wide (Farkas' ex-en) to 26, with the corners lowered from the eye line; the lids from 4.5
mm above to 3; the brow ends from 18 mm above the eye line to 16 and 13, the brow's head
from above the inner eye corner to 6 mm inside it; the lip midline from 9 mm above and 10
below the corners' line to 3 and 16; the outline from 7 mm below eye level to 2.5, and the
lower outline point from the gonion (49 mm out, 66 down) to 57 and 72. The depths' signs
are anatomy; their sizes are how far each point was measured to move sideways with the
nose tip, rounded to 0.1 (the outline's to 0.5) and checked against the anatomy above.
The brow top, nostril wings, chin and outline width are first estimates.

Measured against dlib's 68-point model on 1,663 faces (LFW, UTKFace, CelebA, dlib_faces),
the derived points' median error is 0.095 IOD (per type 0.06 to 0.12; the chin 0.13, the
jawline 0.14 to 0.17). The measured points themselves differ from the 68-point model's
by 0.07 to 0.11 IOD, which every derived point inherits. ``tests/test_five_point_landmarks.py``
keeps these bounds.

**Pose** fits a generic five-point 3D face (``_FIVE_POINT_HEAD``) under scaled
orthographic projection, the way ``pose.py`` fits 68 points. YuNet's keypoints follow a
head's in-plane tilt only in part (a photo turned by 15 degrees turns its eye line by
about 6), so ``roll`` understates tilt, and ``pitch`` from five points is weak; ``yaw``
agrees with the 68-point estimate (correlation 0.93).
"""

from __future__ import annotations

import numpy as np

from facegate.engine.pose import GenericHead
from facegate.engine.results import Pose

_ANCHOR_DEPTH = {"eyeLeft": 0.0, "eyeRight": 0.0, "eyes": 0.0, "mouth": 0.0, "nose": 1.0}
"""Depth of each anchor in nose-tip units: the eyes and mouth corners define the face's
plane; ``eyes`` and ``mouth`` are the points midway between the two eyes and two corners."""

_DERIVED: dict[str, tuple[str, float, float, float]] = {
    # name: (anchor, across, down, depth)
    "leftEyeLeft": ("eyeLeft", -0.21, 0.02, -0.2),
    "leftEyeRight": ("eyeLeft", 0.21, 0.04, 0.0),
    "leftEyeUp": ("eyeLeft", 0.0, -0.05, 0.0),
    "leftEyeDown": ("eyeLeft", 0.0, 0.07, 0.0),
    "rightEyeLeft": ("eyeRight", -0.21, 0.04, 0.0),
    "rightEyeRight": ("eyeRight", 0.21, 0.02, -0.2),
    "rightEyeUp": ("eyeRight", 0.0, -0.05, 0.0),
    "rightEyeDown": ("eyeRight", 0.0, 0.07, 0.0),
    "leftEyeBrowLeft": ("eyeLeft", -0.40, -0.20, -0.4),
    "leftEyeBrowUp": ("eyeLeft", -0.08, -0.37, 0.0),
    "leftEyeBrowRight": ("eyeLeft", 0.30, -0.25, 0.4),
    "rightEyeBrowLeft": ("eyeRight", -0.30, -0.25, 0.4),
    "rightEyeBrowUp": ("eyeRight", 0.08, -0.37, 0.0),
    "rightEyeBrowRight": ("eyeRight", 0.40, -0.20, -0.4),
    "noseLeft": ("nose", -0.22, 0.10, 0.5),
    "noseRight": ("nose", 0.22, 0.10, 0.5),
    "mouthUp": ("mouth", 0.0, -0.05, 0.5),
    "mouthDown": ("mouth", 0.0, 0.26, 0.5),
    "chinBottom": ("mouth", 0.0, 0.76, 0.0),
    "upperJawlineLeft": ("eyes", -1.06, 0.04, -1.5),
    "midJawlineLeft": ("eyes", -0.90, 1.15, -1.0),
    "midJawlineRight": ("eyes", 0.90, 1.15, -1.0),
    "upperJawlineRight": ("eyes", 1.06, 0.04, -1.5),
}
"""Each derived landmark type: the measured point it hangs from, its offset along *across*
(IOD) and *down* (eye-to-mouth drops), and its depth in nose-tip units (module docstring)."""

_FIVE_POINT_HEAD = GenericHead(
    np.array(
        [
            (-31.5, 0.0, 0.0),  # image-left eye centre
            (31.5, 0.0, 0.0),  # image-right eye centre
            (0.0, -35.0, 25.0),  # nose tip
            (-26.5, -63.0, 0.0),  # image-left mouth corner
            (26.5, -63.0, 0.0),  # image-right mouth corner
        ]
    )
)
"""The five keypoints on a generic adult face, in mm (x to the image's right, y up, z
towards the camera): pupils 63 mm apart, mouth 53 mm wide and 63 mm below them, the nose
tip 25 mm in front of their plane at 0.55 of the way down (the drop YuNet's keypoints
show), as in the 68-point generic head of ``pose.py``."""


def landmarks_from_five(points5: np.ndarray) -> dict[str, tuple[float, float]]:
    """All 30 Rekognition landmark types in pixels, from (5, 2) pixel keypoints in YuNet's
    order (eye centres, nose tip, mouth corners; image-left first).

    The detector's box is not used: its sides lie on the face's outline, but fitting the
    jawline to them gained only 0.016 IOD and lost the template's turning with the face."""
    if np.shape(points5) != (5, 2):
        raise ValueError(f"expected (5, 2) keypoints, got {np.shape(points5)}")
    eye_left, eye_right, nose, mouth_left, mouth_right = np.asarray(points5, dtype=np.float64)
    eyes, mouth = (eye_left + eye_right) / 2, (mouth_left + mouth_right) / 2
    across, down = eye_right - eye_left, mouth - eyes
    depth = _sideways(nose - eyes, across, down) * across
    anchors = {"eyeLeft": eye_left, "eyeRight": eye_right, "eyes": eyes, "mouth": mouth, "nose": nose}
    marks = {
        "eyeLeft": eye_left,
        "eyeRight": eye_right,
        "nose": nose,
        "mouthLeft": mouth_left,
        "mouthRight": mouth_right,
        "leftPupil": eye_left,
        "rightPupil": eye_right,
    }
    for name, (anchor, a, d, z) in _DERIVED.items():
        marks[name] = anchors[anchor] + a * across + d * down + (z - _ANCHOR_DEPTH[anchor]) * depth
    return {name: (float(point[0]), float(point[1])) for name, point in marks.items()}


def estimate_pose_from_five(points5: np.ndarray) -> Pose:
    """Roll, yaw and pitch in degrees (see ``Pose`` for signs) from (5, 2) pixel keypoints
    in YuNet's order."""
    if np.shape(points5) != (5, 2):
        raise ValueError(f"expected (5, 2) keypoints, got {np.shape(points5)}")
    return _FIVE_POINT_HEAD.pose(np.asarray(points5, dtype=np.float64))


def _sideways(offset: np.ndarray, across: np.ndarray, down: np.ndarray) -> float:
    """The *across* coordinate of ``offset`` in the (across, down) frame: how far, in IOD,
    the nose tip sits beside the face's middle line. 0 for a degenerate frame."""
    frame = np.column_stack([across, down])
    if abs(np.linalg.det(frame)) < 1e-9:
        return 0.0
    return float(np.linalg.solve(frame, offset)[0])
