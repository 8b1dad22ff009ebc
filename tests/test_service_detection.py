"""DetectFaces and CompareFaces semantics, called as the API layer calls them."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegate.engine.face_models import FACE_MODEL_FAMILIES, load_engine
from facegate.service import exceptions
from facegate.service.detection import compare_faces, detect_faces
from tests.support.photos import encode, lfw_photo


@pytest.fixture(scope="module", params=FACE_MODEL_FAMILIES)
def engine(request):
    return load_engine(request.param)


@pytest.fixture(scope="module")
def powell(faces_dir):
    return {"Bytes": lfw_photo(faces_dir, "Colin_Powell", 1).read_bytes()}


@pytest.fixture(scope="module")
def powell_again(faces_dir):
    return {"Bytes": lfw_photo(faces_dir, "Colin_Powell", 2).read_bytes()}


@pytest.fixture(scope="module")
def someone_else(faces_dir):
    return {"Bytes": lfw_photo(faces_dir, "Tony_Blair", 2).read_bytes()}


def test_default_attributes_give_five_landmarks_pose_and_quality(engine, powell):
    (face,) = detect_faces(engine, {"Image": powell})["FaceDetails"]
    assert {m["Type"] for m in face["Landmarks"]} == {"eyeLeft", "eyeRight", "mouthLeft", "mouthRight", "nose"}
    assert set(face) == {"BoundingBox", "Confidence", "Landmarks", "Pose", "Quality"}
    box = face["BoundingBox"]
    assert 0 < box["Left"] < box["Left"] + box["Width"] < 1 and 0 < box["Top"] < box["Top"] + box["Height"] < 1


def test_all_attributes_give_every_landmark_but_never_age_gender_or_emotion(engine, powell):
    (face,) = detect_faces(engine, {"Image": powell, "Attributes": ["ALL"]})["FaceDetails"]
    assert len(face["Landmarks"]) == 30
    assert not {"AgeRange", "Gender", "Emotions", "Smile"} & set(face)
    assert all(0 <= m["X"] <= 1 and 0 <= m["Y"] <= 1 for m in face["Landmarks"])


def test_an_image_without_faces_has_no_face_details(engine):
    blank = {"Bytes": encode(Image.new("RGB", (200, 200), (90, 120, 200)), "PNG")}
    assert detect_faces(engine, {"Image": blank}) == {"FaceDetails": []}


def test_s3_images_are_refused_when_no_store_is_configured(engine):
    with pytest.raises(exceptions.InvalidS3ObjectException, match="no S3-compatible store is configured"):
        detect_faces(engine, {"Image": {"S3Object": {"Bucket": "b", "Name": "k.jpg"}}})


def test_corrupt_image_maps_to_invalid_image_format_exception(engine):
    with pytest.raises(exceptions.InvalidImageFormatException):
        detect_faces(engine, {"Image": {"Bytes": b"\xff\xd8\xff\xe0 not really a jpeg"}})


def test_same_person_matches_and_another_person_does_not(engine, powell, powell_again, someone_else):
    same = compare_faces(engine, {"SourceImage": powell, "TargetImage": powell_again})
    other = compare_faces(engine, {"SourceImage": powell, "TargetImage": someone_else})
    assert len(same["FaceMatches"]) == 1 and same["UnmatchedFaces"] == []
    assert same["FaceMatches"][0]["Similarity"] >= 80
    assert other["FaceMatches"] == [] and len(other["UnmatchedFaces"]) == 1


def test_similarity_threshold_moves_a_face_between_matched_and_unmatched(engine, powell, powell_again):
    similarity = compare_faces(engine, {"SourceImage": powell, "TargetImage": powell_again, "SimilarityThreshold": 0})[
        "FaceMatches"
    ][0]["Similarity"]
    above = compare_faces(
        engine, {"SourceImage": powell, "TargetImage": powell_again, "SimilarityThreshold": min(similarity + 0.01, 100)}
    )
    assert above["FaceMatches"] == [] and len(above["UnmatchedFaces"]) == 1


def test_source_without_a_face_is_an_invalid_parameter(engine, powell):
    blank = {"Bytes": encode(Image.new("RGB", (200, 200)), "PNG")}
    with pytest.raises(exceptions.InvalidParameterException, match="SourceImage"):
        compare_faces(engine, {"SourceImage": blank, "TargetImage": powell})


def test_high_quality_filter_drops_a_blurred_target_face(engine, powell, faces_dir):
    from PIL import ImageFilter

    blurred = Image.open(lfw_photo(faces_dir, "Colin_Powell", 2)).filter(ImageFilter.GaussianBlur(2.5))
    target = {"Bytes": encode(blurred, "JPEG")}
    kept = compare_faces(engine, {"SourceImage": powell, "TargetImage": target, "QualityFilter": "NONE"})
    dropped = compare_faces(engine, {"SourceImage": powell, "TargetImage": target, "QualityFilter": "HIGH"})
    assert len(kept["FaceMatches"]) + len(kept["UnmatchedFaces"]) == 1
    assert dropped["FaceMatches"] == [] and dropped["UnmatchedFaces"] == []


def test_similarities_are_sorted_and_on_the_0_to_100_scale(engine, faces_dir):
    group = faces_dir / "dlib_faces" / "_unlabeled_or_multiface" / "2008_002470.jpg"
    response = compare_faces(
        engine,
        {"SourceImage": {"Bytes": group.read_bytes()}, "TargetImage": {"Bytes": group.read_bytes()}, "SimilarityThreshold": 0},
    )
    similarities = [m["Similarity"] for m in response["FaceMatches"]]
    assert len(similarities) > 1 and similarities == sorted(similarities, reverse=True)
    assert all(0 <= s <= 100 for s in similarities) and np.isclose(similarities[0], 100, atol=0.5)
