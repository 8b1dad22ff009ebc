"""Bad requests get the right AWS error and status, never a 5xx, and the server keeps serving."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from botocore.exceptions import ClientError

from facegate.api.app import create_app
from facegate.governance.keys import NewAccessKey
from tests.support.photos import lfw_photo
from facegate.bench.local_server import serving
from tests.support.server import running_server
from tests.support.signing import raw_post, signed_post


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        running.client().create_collection(CollectionId="exists")
        yield running


def post(server, target: str, body: bytes, key: NewAccessKey | None = None, **kw):
    key = key or server.key
    return signed_post(server.endpoint, target, body, key.access_key_id, key.secret_access_key, **kw)


def expect(result, status: int, code: str, *message_parts: str) -> None:
    got_status, headers, body = result
    assert (got_status, body.get("__type")) == (status, code), body
    assert "x-amzn-RequestId" in headers or "x-amzn-requestid" in {k.lower() for k in headers}
    for part in message_parts:
        assert part in body["Message"]


def test_unknown_operation(server):
    expect(post(server, "RekognitionService.MakeCoffee", b"{}"), 400, "UnknownOperationException", "MakeCoffee")


def test_operation_in_the_model_but_not_implemented_says_so(server):
    expect(post(server, "RekognitionService.DetectLabels", b'{"Image": {"Bytes": "AAAA"}}'), 400, "UnsupportedOperationException", "DetectLabels")


def test_body_that_is_not_json(server):
    expect(post(server, "RekognitionService.ListCollections", b"{not json"), 400, "SerializationException")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"CollectionId": 5}, "CollectionId"),
        ({"CollectionId": "bad id!"}, "CollectionId"),
        ({"CollectionId": "exists", "MaxResults": "ten"}, "MaxResults"),
        ({"CollectionId": "exists", "MaxResults": 1.5}, "MaxResults"),
        ({"CollectionId": "exists", "MaxResults": 99999}, "MaxResults"),
        ({"CollectionId": "exists", "FaceIds": ["not-a-uuid"]}, "FaceIds[0]"),
        ({"CollectionId": "exists", "Bogus": 1}, "Bogus"),
        ({}, "CollectionId"),
    ],
)
def test_wrong_members_are_invalid_parameters_naming_the_field(server, body, field):
    expect(post(server, "RekognitionService.ListFaces", json.dumps(body).encode()), 400, "InvalidParameterException", field)


def test_wrong_enum_and_types_through_boto3(server):
    client = server.client(validate=False)
    with pytest.raises(ClientError) as excinfo:
        client.detect_faces(Image={"Bytes": b"x"}, Attributes=["SHOE_SIZE"])
    assert excinfo.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "Attributes[0]" in excinfo.value.response["Error"]["Message"]


def test_oversize_image_is_image_too_large(server):
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"\xff\xd8\xff" + bytes(5 * 1024 * 1024)).decode()}}).encode()
    expect(post(server, "RekognitionService.DetectFaces", body), 400, "ImageTooLargeException")


def test_corrupt_image_is_invalid_image_format(server):
    body = json.dumps({"Image": {"Bytes": base64.b64encode(b"GIF89a" + bytes(100)).decode()}}).encode()
    expect(post(server, "RekognitionService.DetectFaces", body), 400, "InvalidImageFormatException")


def test_unknown_collection_and_malformed_face_id(server, faces_dir):
    client = server.client()
    with pytest.raises(ClientError) as excinfo:
        client.index_faces(CollectionId="missing", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})
    assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    bad = json.dumps({"CollectionId": "exists", "FaceId": "1234"}).encode()
    expect(post(server, "RekognitionService.SearchFaces", bad), 400, "InvalidParameterException", "FaceId")


def test_missing_signature(server):
    headers = {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": "application/x-amz-json-1.1"}
    expect(raw_post(server.endpoint, headers, b"{}"), 400, "MissingAuthenticationTokenException")


def test_malformed_authorization_header(server):
    headers = {"X-Amz-Target": "RekognitionService.ListCollections", "Authorization": "AWS4-HMAC-SHA256 Credential=oops"}
    expect(raw_post(server.endpoint, headers, b"{}"), 400, "IncompleteSignatureException")


def test_forged_signature(server):
    forged = NewAccessKey(server.key.access_key_id, "not-the-secret")
    expect(post(server, "RekognitionService.ListCollections", b"{}", key=forged), 400, "InvalidSignatureException")


def test_unknown_access_key(server):
    stranger = NewAccessKey("AKIAUNKNOWNUNKNOWN00", "whatever")
    expect(post(server, "RekognitionService.ListCollections", b"{}", key=stranger), 400, "UnrecognizedClientException")


def test_expired_signature(server):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    expect(post(server, "RekognitionService.ListCollections", b"{}", signed_at=old), 400, "InvalidSignatureException", "Signature expired")


def test_a_signature_from_14_minutes_ago_is_still_accepted(server):
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=14)
    status, _, body = post(server, "RekognitionService.ListCollections", b"{}", signed_at=recent)
    assert status == 200 and "exists" in body["CollectionIds"]


def test_boto3_sees_forged_credentials_as_a_client_error(server):
    client = server.client(NewAccessKey(server.key.access_key_id, "wrong"))
    with pytest.raises(ClientError) as excinfo:
        client.list_collections()
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_health_needs_no_signature(server):
    import urllib.request

    with urllib.request.urlopen(server.endpoint + "/health") as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_a_bug_is_a_500_internal_server_error_and_the_server_keeps_serving():
    def broken(caller, operation, params, context):
        if operation == "ListCollections":
            raise RuntimeError("boom")
        return {"FaceDetails": []}

    with serving(create_app(broken, lambda key: NewAccessKey(key, "secret"))) as endpoint:
        status, _, body = signed_post(endpoint, "RekognitionService.ListCollections", b"{}", "AKIATEST", "secret")
        assert (status, body["__type"]) == (500, "InternalServerError") and "boom" not in body["Message"]
        image = base64.b64encode(b"x").decode()
        status, _, body = signed_post(endpoint, "RekognitionService.DetectFaces", json.dumps({"Image": {"Bytes": image}}).encode(), "AKIATEST", "secret")
        assert status == 200 and body == {"FaceDetails": []}
