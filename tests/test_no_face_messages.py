"""An image without a usable face gets Rekognition's InvalidParameterException, and the
message says truly why: no face at all, or faces the requested QualityFilter rejected."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from PIL import Image, ImageFilter

from tests.support.photos import encode, lfw_photo
from tests.support.server import running_server

NO_FACES = "There are no faces in the image. Should be at least 1."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        running.client().create_collection(CollectionId="gallery")
        yield running


def blank() -> dict[str, bytes]:
    return {"Bytes": encode(Image.new("RGB", (120, 120), (128, 128, 128)), "JPEG")}


def blurred(faces_dir) -> dict[str, bytes]:
    """A real face, still found, but too blurred for QualityFilter HIGH (sharpness about 4)."""
    return {"Bytes": encode(Image.open(lfw_photo(faces_dir)).filter(ImageFilter.GaussianBlur(3)), "JPEG")}


def message(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as excinfo:
        call()
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"
    return excinfo.value.response["Error"]["Message"]


@pytest.mark.parametrize("quality_filter", [{}, {"QualityFilter": "HIGH"}], ids=["no QualityFilter", "QualityFilter HIGH"])
def test_a_photo_without_a_face_says_there_are_no_faces(server, quality_filter):
    client = server.client()
    assert message(lambda: client.search_faces_by_image(CollectionId="gallery", Image=blank(), **quality_filter)) == NO_FACES
    assert message(lambda: client.search_users_by_image(CollectionId="gallery", Image=blank(), **quality_filter)) == NO_FACES
    assert message(lambda: client.compare_faces(SourceImage=blank(), TargetImage=blank(), **quality_filter)) == f"SourceImage: {NO_FACES}"


def test_a_face_the_quality_filter_rejects_says_which_filter_and_why(server, faces_dir):
    client = server.client()
    text = message(lambda: client.search_faces_by_image(CollectionId="gallery", Image=blurred(faces_dir), QualityFilter="HIGH"))
    assert "QualityFilter HIGH" in text and "LOW_SHARPNESS" in text and "1 found" in text
    assert client.search_faces_by_image(CollectionId="gallery", Image=blurred(faces_dir))["FaceMatches"] == []
