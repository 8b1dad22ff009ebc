"""Rekognition's face structures (FaceDetail, ComparedFace, BoundingBox) from engine faces.

The engine works in pixels; Rekognition reports ratios of the image's width and height,
so this is the one place that divides.
"""

from __future__ import annotations

from typing import Any

from facegate.engine.image import DecodedImage
from facegate.engine.results import Face, PixelBox
from facegate.store.records import FaceRecord, FaceSummary

DEFAULT_LANDMARKS = ("eyeLeft", "eyeRight", "mouthLeft", "mouthRight", "nose")
"""The landmark subset Rekognition returns unless ``Attributes`` asks for ALL."""


def bounding_box(box: PixelBox, image: DecodedImage) -> dict[str, float]:
    """Left/Top/Width/Height as ratios of the image width and height (may fall outside 0–1)."""
    return {
        "Width": box.width / image.width,
        "Height": box.height / image.height,
        "Left": box.left / image.width,
        "Top": box.top / image.height,
    }


def landmarks(face: Face, image: DecodedImage, every: bool) -> list[dict[str, Any]]:
    names = face.landmarks.keys() if every else DEFAULT_LANDMARKS
    return [
        {"Type": name, "X": face.landmarks[name][0] / image.width, "Y": face.landmarks[name][1] / image.height}
        for name in names
        if name in face.landmarks
    ]


def face_detail(face: Face, image: DecodedImage, every_landmark: bool) -> dict[str, Any]:
    """A ``FaceDetail``. Age, gender and emotion are deliberately absent: facegate does not infer them."""
    detail: dict[str, Any] = {
        "BoundingBox": bounding_box(face.detection.box, image),
        "Confidence": face.detection.confidence,
        "Landmarks": landmarks(face, image, every_landmark),
    }
    if face.pose is not None:
        detail["Pose"] = {"Roll": face.pose.roll, "Yaw": face.pose.yaw, "Pitch": face.pose.pitch}
    if face.quality is not None:
        detail["Quality"] = {"Brightness": face.quality.brightness, "Sharpness": face.quality.sharpness}
    return detail


def compared_face(face: Face, image: DecodedImage) -> dict[str, Any]:
    """A ``ComparedFace`` as CompareFaces returns it (default landmarks, pose, quality)."""
    return face_detail(face, image, every_landmark=False)


def stored_face(record: FaceRecord | FaceSummary) -> dict[str, Any]:
    """A ``Face`` as ListFaces, IndexFaces and the searches return it."""
    left, top, width, height = record.box
    face: dict[str, Any] = {
        "FaceId": record.face_id,
        "BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top},
        "ImageId": record.image_id,
        "Confidence": record.confidence,
        "IndexFacesModelVersion": record.model_version,
    }
    if record.external_image_id is not None:
        face["ExternalImageId"] = record.external_image_id
    if record.user_id is not None:
        face["UserId"] = record.user_id
    return face
