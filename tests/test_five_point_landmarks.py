"""Rekognition's 30 landmark types and the head pose from YuNet's five keypoints (issue 10).

dlib's 68-point model is the yardstick: dlib_faces' 68-point labels (made with that model)
and its predictions on LFW photos. It only measures the five-point template here; the
template's numbers are geometry, not fitted to it (see ``five_point_landmarks.py``).
Errors are in interocular distances (IOD: between the 68-point eye centres).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facegate.engine.dlib_detectors import HogDetector
from facegate.engine.dlib_landmarks import sixty_eight_point_model
from facegate.engine.five_point_landmarks import estimate_pose_from_five, landmarks_from_five
from facegate.engine.landmarks import LANDMARK_TYPES, rekognition_landmarks
from facegate.engine.pose import estimate_pose
from facegate.engine.results import Detection, PixelBox, Pose
from facegate.engine.yunet import YuNetDetector
from facegate.evaluate.detection import iou, read_imglab
from tests.support.photos import lfw_photo

MEASURED = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight", "leftPupil", "rightPupil")
DERIVED = tuple(name for name in LANDMARK_TYPES if name not in MEASURED)
JAWLINE = ("upperJawlineLeft", "midJawlineLeft", "midJawlineRight", "upperJawlineRight")

LFW_EVERY = 20
"""Every 20th LFW identity's first photo (84 photos) joins dlib_faces as a reference."""

PORTRAITS = [("Colin_Powell", n) for n in (1, 2, 3, 4)] + [("Hugo_Chavez", n) for n in (1, 2, 3, 4)]
PORTRAITS += [("Tony_Blair", n) for n in (1, 2)] + [("Laura_Bush", n) for n in (1, 2)]
"""LFW photos whose centre face is the only one near the middle."""

KEYPOINTS = np.array([[100.0, 110.0], [140.0, 111.0], [121.0, 133.0], [104.0, 152.0], [137.0, 153.0]])
"""Five plausible keypoints of an upright face, in pixels, for the pure-geometry tests."""


@dataclass(frozen=True)
class ReferenceFace:
    """One face seen by both models: YuNet's keypoints and box, the 68-point reference."""

    keypoints: np.ndarray
    box: PixelBox
    points68: np.ndarray

    @property
    def iod(self) -> float:
        return float(np.linalg.norm(self.points68[42:48].mean(axis=0) - self.points68[36:42].mean(axis=0)))


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return YuNetDetector()


@pytest.fixture(scope="module")
def reference_faces(faces_dir: Path, yunet: YuNetDetector) -> list[ReferenceFace]:
    """YuNet's faces matched to dlib_faces' labelled 68 points and to the 68-point model's
    prediction in dlib's own (HOG) box on LFW photos."""
    faces = []
    root = faces_dir / "dlib_faces"
    for labels in ("testing_with_face_landmarks.xml", "training_with_face_landmarks.xml"):
        for photo in read_imglab(root / "_labels" / labels, root / "_unlabeled_or_multiface"):
            pixels = np.asarray(Image.open(photo.path).convert("RGB"))
            faces += _matched(yunet.detect(pixels), photo.boxes, [np.array(p) for p in photo.landmarks])
    hog, model68 = HogDetector(), sixty_eight_point_model()
    people = sorted(p for p in (faces_dir / "lfw_erstrong").iterdir() if p.is_dir() and not p.name.startswith("_"))
    for person in people[::LFW_EVERY]:
        pixels = np.asarray(Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB"))
        boxes = [d.box for d in hog.detect(pixels)]
        faces += _matched(yunet.detect(pixels), boxes, [model68.predict(pixels, box) for box in boxes])
    return faces


def _matched(detections: list[Detection], boxes: list[PixelBox], points68: list[np.ndarray]) -> list[ReferenceFace]:
    """Each reference face with the YuNet face whose eyes lie in its box, best overlap first."""
    matched = []
    for box, points in zip(boxes, points68):
        candidates = [d for d in detections if _inside(np.mean(d.keypoints[:2], axis=0), box)]
        if candidates:
            best = max(candidates, key=lambda d: iou(d.box, box))
            matched.append(ReferenceFace(np.array(best.keypoints), best.box, points))
    return matched


def _inside(point: np.ndarray, box: PixelBox) -> bool:
    return box.left <= point[0] <= box.right and box.top <= point[1] <= box.bottom


def errors(faces: list[ReferenceFace], names: tuple[str, ...]) -> np.ndarray:
    """(faces, names) distances from the 68-point model's landmark, in IOD."""
    out = []
    for face in faces:
        ours, theirs = landmarks_from_five(face.keypoints), rekognition_landmarks(face.points68)
        out.append([math.dist(ours[name], theirs[name]) / face.iod for name in names])
    return np.array(out)


def pose_triple(pose: Pose) -> np.ndarray:
    return np.array([pose.roll, pose.yaw, pose.pitch])


def centre_face_keypoints(detector: YuNetDetector, image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    centre = np.array(pixels.shape[1::-1]) / 2
    face = min(detector.detect(pixels), key=lambda d: float(np.linalg.norm(np.mean(d.keypoints, axis=0) - centre)))
    return np.array(face.keypoints)


def turned(image: Image.Image, degrees: float) -> Image.Image:
    """The photo turned clockwise by ``degrees`` (Pillow turns counter-clockwise)."""
    return image.rotate(-degrees, resample=Image.Resampling.BILINEAR, fillcolor=(128, 128, 128))


def similarity(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """``points`` turned clockwise on screen (image y points down), scaled and shifted."""
    t = math.radians(degrees)
    rotation = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return scale * points @ rotation.T + np.array(shift)


# --- the template's geometry, on fixed keypoints -------------------------------------


def test_every_landmark_type_is_reported_and_the_measured_ones_are_the_keypoints():
    marks = landmarks_from_five(KEYPOINTS)
    assert set(marks) == set(LANDMARK_TYPES) and len(marks) == 30
    for name, index in [("eyeLeft", 0), ("eyeRight", 1), ("nose", 2), ("mouthLeft", 3), ("mouthRight", 4)]:
        assert marks[name] == tuple(KEYPOINTS[index])
    assert marks["leftPupil"] == marks["eyeLeft"] and marks["rightPupil"] == marks["eyeRight"]


def test_landmarks_turn_scale_and_move_with_the_keypoints():
    before = landmarks_from_five(KEYPOINTS)
    moved = similarity(KEYPOINTS, 25.0, 1.7, (40.0, -12.0))
    after = landmarks_from_five(moved)
    for name in LANDMARK_TYPES:
        expected = similarity(np.array([before[name]]), 25.0, 1.7, (40.0, -12.0))[0]
        assert np.allclose(after[name], expected, atol=1e-9), name


def test_mirrored_keypoints_give_mirrored_landmarks_with_left_and_right_swapped():
    width = 250.0
    mirrored = KEYPOINTS[[1, 0, 2, 4, 3]] * [-1, 1] + [width, 0]
    marks = landmarks_from_five(KEYPOINTS)
    mirror_marks = landmarks_from_five(mirrored)
    for name in LANDMARK_TYPES:
        twin = _swap_sides(name)
        assert np.allclose(mirror_marks[twin], (width - marks[name][0], marks[name][1]), atol=1e-9), name


def _swap_sides(name: str) -> str:
    """The landmark type on the other side of the face: left and right swap everywhere."""
    twin = {"left": "right", "right": "left", "Left": "Right", "Right": "Left"}
    return re.sub(r"[Ll]eft|[Rr]ight", lambda match: twin[match.group()], name)


def test_turning_the_keypoints_clockwise_adds_that_angle_to_roll_only():
    before = pose_triple(estimate_pose_from_five(KEYPOINTS))
    after = pose_triple(estimate_pose_from_five(similarity(KEYPOINTS, 15.0, 1.3, (20.0, 5.0))))
    assert np.allclose(after - before, [15.0, 0.0, 0.0], atol=1e-6)


def test_keypoints_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        landmarks_from_five(KEYPOINTS[:4])
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        estimate_pose_from_five(np.zeros((68, 2)))


# --- landmarks on real faces, against the 68-point model ------------------------------


def test_all_landmarks_lie_in_or_near_the_face_box(reference_faces):
    """Near: within a quarter of the box's size outside it (measured: at most 0.21)."""
    assert len(reference_faces) >= 100
    for face in reference_faces:
        box = face.box
        for name, (x, y) in landmarks_from_five(face.keypoints).items():
            assert box.left - box.width / 4 <= x <= box.right + box.width / 4, name
            assert box.top - box.height / 4 <= y <= box.bottom + box.height / 4, name


def test_left_and_right_landmarks_keep_the_image_order_on_upright_frontal_faces(reference_faces):
    """Upright and frontal: the 68-point estimate within 15 degrees of roll and 25 of yaw.
    Each row is left to right and each column top to bottom, group by group (the two jawline
    points of one side run nearly straight down, so either may be further out)."""
    rows = [
        ("leftEyeBrowLeft", "leftEyeBrowUp", "leftEyeBrowRight"),
        ("leftEyeBrowRight", "rightEyeBrowLeft", "rightEyeBrowUp", "rightEyeBrowRight"),
        ("leftEyeLeft", "eyeLeft", "leftEyeRight", "rightEyeLeft", "eyeRight", "rightEyeRight"),
        ("noseLeft", "nose", "noseRight"),
        ("mouthLeft", "mouthUp", "mouthRight"),
        ("upperJawlineLeft midJawlineLeft", "chinBottom", "midJawlineRight upperJawlineRight"),
    ]
    columns = [
        ("leftEyeBrowUp", "leftEyeUp", "eyeLeft", "leftEyeDown", "nose", "mouthUp", "mouthDown", "chinBottom"),
        ("rightEyeBrowUp", "rightEyeUp", "eyeRight", "rightEyeDown", "noseRight", "mouthRight"),
    ]
    poses = [estimate_pose(f.points68) for f in reference_faces]
    frontal = [f for f, pose in zip(reference_faces, poses) if abs(pose.roll) < 15 and abs(pose.yaw) < 25]
    assert len(frontal) >= 60
    for face in frontal:
        marks = landmarks_from_five(face.keypoints)
        for groups, axis in [(row, 0) for row in rows] + [(column, 1) for column in columns]:
            spans = [[marks[name][axis] for name in group.split()] for group in groups]
            assert all(max(a) < min(b) for a, b in zip(spans, spans[1:])), (groups, spans)


def test_derived_landmarks_stay_near_the_68_point_models(reference_faces):
    """Measured on these 130 faces: median 0.11 IOD over all derived points; per type at most
    0.16 off the jawline (the chin) and 0.20 on it. The five measured points themselves differ
    from the 68-point model's by a median 0.08 to 0.13 IOD, and every derived point inherits that."""
    derived = errors(reference_faces, DERIVED)
    assert np.median(derived) <= 0.13
    per_type = dict(zip(DERIVED, np.median(derived, axis=0)))
    for name, error in per_type.items():
        assert error <= (0.26 if name in JAWLINE else 0.18), (name, error)


def test_the_jawline_moves_with_a_turned_head(reference_faces):
    """On faces turned more than 20 degrees the outline shifts against the eyes; on the 51
    such faces here the jawline's median error is 0.20 IOD, and 0.33 without the depth term."""
    faces = [f for f in reference_faces if abs(estimate_pose(f.points68).yaw) > 20]
    assert len(faces) >= 20
    assert np.median(errors(faces, JAWLINE)) <= 0.26


# --- pose on real faces ---------------------------------------------------------------


def test_pose_agrees_with_the_68_point_estimate_on_frontal_photos(reference_faces):
    """Frontal: the 68-point estimate within 20 degrees of yaw and pitch and 10 of roll.
    Median differences measured on the 57 such faces here: 2.8 (roll), 5.2 (yaw) and 6.7
    (pitch) degrees; on 797 of LFW, UTKFace, CelebA and dlib_faces: 2.0, 4.8 and 8.4."""
    differences = []
    for face in reference_faces:
        reference = pose_triple(estimate_pose(face.points68))
        if abs(reference[0]) <= 10 and abs(reference[1]) <= 20 and abs(reference[2]) <= 20:
            differences.append(np.abs(pose_triple(estimate_pose_from_five(face.keypoints)) - reference))
    assert len(differences) >= 30
    roll, yaw, pitch = np.median(differences, axis=0)
    assert roll <= 4 and yaw <= 7 and pitch <= 12, (roll, yaw, pitch)


def test_yaw_has_the_68_point_estimates_sign_on_turned_faces(reference_faces):
    pairs = [
        (estimate_pose_from_five(f.keypoints).yaw, estimate_pose(f.points68).yaw)
        for f in reference_faces
        if abs(estimate_pose(f.points68).yaw) > 15
    ]
    assert len(pairs) >= 20
    assert np.mean([np.sign(ours) == np.sign(theirs) for ours, theirs in pairs]) >= 0.95


def test_mirroring_a_photo_flips_yaw_and_roll_but_not_pitch(faces_dir, yunet):
    """YuNet is not quite mirror-symmetric (its nose point sits about 1.5 degrees of yaw to
    the image's left), so this holds for the median and for the sign of clear turns.
    Measured on these photos: yaw and mirrored yaw sum to a median 3.6 degrees, roll to 2.8;
    pitch moves by 5.5."""
    poses = []
    for name, number in PORTRAITS:
        image = Image.open(lfw_photo(faces_dir, name, number)).convert("RGB")
        mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        poses.append(
            [pose_triple(estimate_pose_from_five(centre_face_keypoints(yunet, im))) for im in (image, mirrored)]
        )
    poses = np.array(poses)  # (photos, 2, 3)
    roll_sum, yaw_sum = np.abs(poses[:, 0, :2] + poses[:, 1, :2]).T
    pitch_change = np.abs(poses[:, 0, 2] - poses[:, 1, 2])
    assert np.median(yaw_sum) <= 8 and np.median(roll_sum) <= 5 and np.median(pitch_change) <= 9
    clear = np.abs(poses[:, 0, 1]) > 10
    assert clear.any() and np.all(np.sign(poses[clear, 0, 1]) == -np.sign(poses[clear, 1, 1]))


def _roll_changes(faces_dir: Path, detector: YuNetDetector, degrees: float) -> np.ndarray:
    changes = []
    for name, number in PORTRAITS:
        image = Image.open(lfw_photo(faces_dir, name, number)).convert("RGB")
        before = estimate_pose_from_five(centre_face_keypoints(detector, image)).roll
        after = estimate_pose_from_five(centre_face_keypoints(detector, turned(image, degrees))).roll
        changes.append(after - before)
    return np.array(changes)


@pytest.mark.parametrize("degrees", [15.0, -15.0])
def test_turning_a_photo_turns_roll_the_same_way(faces_dir, yunet, degrees):
    """Most photos' roll moves the right way, by a median of at least 3 degrees. Measured on
    these photos: turned by 15 degrees, 10 of 12 and a median 6.8; by -15, 12 of 12 and 5.5;
    on 42 other LFW photos, 42 of 42 both ways. YuNet's eye points barely follow a turn on
    some faces, so this cannot hold for every photo (see the next test)."""
    changes = _roll_changes(faces_dir, yunet, degrees) * np.sign(degrees)
    assert np.mean(changes > 0) >= 0.75 and np.median(changes) >= 3, changes


@pytest.mark.xfail(
    strict=True,
    reason="YuNet 2023mar's keypoints follow in-plane rotation only in part: a photo turned by "
    "15 degrees turns their eye line by a median 6 (the same in OpenCV's FaceDetectorYN), so "
    "five-point roll understates tilt; the 68-point model follows within 4 degrees",
)
def test_roll_follows_a_15_degree_turn_of_the_photo(faces_dir, yunet):
    assert abs(np.median(_roll_changes(faces_dir, yunet, 15.0)) - 15) <= 4
