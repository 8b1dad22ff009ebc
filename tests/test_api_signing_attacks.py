"""Attacks on the signature, over the raw wire: a captured request must not be re-aimed at
another operation, given another body, or given a case reference it was not signed with.

Each test sends the request an attacker would, then checks the exact error a client sees
and that nothing happened.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re

import pytest

from facegate.api import sigv4
from facegate.api.exceptions import InvalidSignatureException
from facegate.governance import audit
from facegate.governance.keys import NewAccessKey
from tests.support.photos import lfw_photo
from tests.support.server import running_server
from tests.support.signing import JSON_1_1, raw_post, sign_headers, signed_post


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        running.client().create_collection(CollectionId="precious")
        yield running


def post(server, target: str, body: bytes, **kw):
    return signed_post(server.endpoint, target, body, server.key.access_key_id, server.key.secret_access_key, **kw)


def expect(result, status: int, code: str, *message_parts: str) -> None:
    got_status, headers, body = result
    assert (got_status, body.get("__type")) == (status, code), body
    assert "x-amzn-requestid" in {k.lower() for k in headers}
    for part in message_parts:
        assert part in body["Message"], body["Message"]


def request_id(headers: dict) -> str:
    return next(v for k, v in headers.items() if k.lower() == "x-amzn-requestid")


def records(server) -> list[dict]:
    with server.facegate.store.reader() as tx:
        return audit.stored_records(tx)


def test_a_request_signed_without_its_target_cannot_be_replayed_as_another_operation(server):
    body = json.dumps({"CollectionId": "precious"}).encode()
    # The victim's client signed DescribeCollection over host;x-amz-date only ...
    replay = post(server, "RekognitionService.DescribeCollection", body, signed=(),
                  after_signing={"X-Amz-Target": "RekognitionService.DeleteCollection"})
    # ... and the attacker re-sends it as DeleteCollection.
    expect(replay, 400, "IncompleteSignatureException", "x-amz-target")
    assert server.client().describe_collection(CollectionId="precious")["FaceCount"] == 0


@pytest.mark.parametrize("dropped", ["content-type", "host", "x-amz-date", "x-amz-target"])
def test_each_header_boto3_signs_must_be_signed(server, dropped):
    headers = sign_headers(server.endpoint, {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": JSON_1_1},
                           b"{}", server.key.access_key_id, server.key.secret_access_key)
    signed = re.search(r"SignedHeaders=([^,]+)", headers["Authorization"])[1]
    assert signed == "content-type;host;x-amz-date;x-amz-target"  # what botocore covers
    narrowed = ";".join(h for h in signed.split(";") if h != dropped)
    headers["Authorization"] = headers["Authorization"].replace(signed, narrowed)
    expect(raw_post(server.endpoint, headers, b"{}"), 400, "IncompleteSignatureException", dropped)


def test_a_repeated_target_header_is_rejected_rather_than_guessed(server):
    headers = sign_headers(server.endpoint, {"X-Amz-Target": "RekognitionService.DescribeCollection", "Content-Type": JSON_1_1},
                           b'{"CollectionId": "precious"}', server.key.access_key_id, server.key.secret_access_key)
    pairs = [*headers.items(), ("X-Amz-Target", "RekognitionService.DeleteCollection")]
    expect(raw_post(server.endpoint, pairs, b'{"CollectionId": "precious"}'), 400, "IncompleteSignatureException", "only once")
    assert server.client().describe_collection(CollectionId="precious")


def test_a_second_authorization_header_is_rejected(server):
    headers = sign_headers(server.endpoint, {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": JSON_1_1},
                           b"{}", server.key.access_key_id, server.key.secret_access_key)
    pairs = [*headers.items(), ("Authorization", headers["Authorization"])]
    expect(raw_post(server.endpoint, pairs, b"{}"), 400, "IncompleteSignatureException", "authorization")


@pytest.mark.parametrize("extra", [", Foo=bar", ", Signature=" + "0" * 64, ", SignedHeaders=host"])
def test_an_authorization_header_with_extra_components_is_incomplete(server, extra):
    headers = sign_headers(server.endpoint, {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": JSON_1_1},
                           b"{}", server.key.access_key_id, server.key.secret_access_key)
    headers["Authorization"] += extra
    expect(raw_post(server.endpoint, headers, b"{}"), 400, "IncompleteSignatureException")


def test_a_signature_dated_more_than_15_minutes_ahead_is_not_yet_valid(server):
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=20)
    expect(post(server, "RekognitionService.ListCollections", b"{}", signed_at=ahead), 400, "InvalidSignatureException", "not yet current")


def test_a_signature_dated_14_minutes_ahead_is_accepted(server):
    ahead = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=14)
    status, _, body = post(server, "RekognitionService.ListCollections", b"{}", signed_at=ahead)
    assert status == 200 and "precious" in body["CollectionIds"]


@pytest.fixture(scope="module")
def two_faces(server, faces_dir):
    client = server.client()
    client.create_collection(CollectionId="two-faces")
    return [
        client.index_faces(CollectionId="two-faces", Image={"Bytes": lfw_photo(faces_dir, name).read_bytes()}, MaxFaces=1)["FaceRecords"][0]["Face"]["FaceId"]
        for name in ("Colin_Powell", "Tony_Blair")
    ]


def face_ids(server, collection: str) -> set[str]:
    return {f["FaceId"] for f in server.client().list_faces(CollectionId=collection)["Faces"]}


def test_an_unsigned_payload_cannot_carry_a_swapped_body(server, two_faces):
    signed_for, swapped_in = two_faces
    signed_body = json.dumps({"CollectionId": "two-faces", "FaceIds": [signed_for]}).encode()
    headers = sign_headers(
        server.endpoint,
        {"X-Amz-Target": "RekognitionService.DeleteFaces", "Content-Type": JSON_1_1, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
        signed_body, server.key.access_key_id, server.key.secret_access_key,
    )
    swapped = json.dumps({"CollectionId": "two-faces", "FaceIds": [swapped_in]}).encode()
    expect(raw_post(server.endpoint, headers, swapped), 400, "InvalidSignatureException", "UNSIGNED-PAYLOAD")
    expect(raw_post(server.endpoint, headers, signed_body), 400, "InvalidSignatureException", "UNSIGNED-PAYLOAD")
    assert face_ids(server, "two-faces") == set(two_faces)


def test_a_body_swapped_under_a_plain_signature_is_rejected(server, two_faces):
    signed_body = json.dumps({"CollectionId": "two-faces", "FaceIds": [two_faces[0]]}).encode()
    headers = sign_headers(server.endpoint, {"X-Amz-Target": "RekognitionService.DeleteFaces", "Content-Type": JSON_1_1},
                           signed_body, server.key.access_key_id, server.key.secret_access_key)
    swapped = json.dumps({"CollectionId": "two-faces", "FaceIds": [two_faces[1]]}).encode()
    expect(raw_post(server.endpoint, headers, swapped), 400, "InvalidSignatureException", "does not match")
    assert face_ids(server, "two-faces") == set(two_faces)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://rekognition.example.org"])
def test_the_signature_covers_the_body_even_behind_tls(url):
    """botocore may leave the payload unsigned over https; the server never does."""
    def verify(body: bytes):
        headers = sign_headers(url, {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": JSON_1_1},
                               b"{}", "AKIATEST", "secret")
        pairs = [(k.lower(), v) for k, v in headers.items()] + [("host", url.split("//")[1])]
        return sigv4.verify("POST", url + "/", pairs, body, lambda key: NewAccessKey(key, "secret"))

    assert verify(b"{}").access_key_id == "AKIATEST"
    with pytest.raises(InvalidSignatureException):
        verify(b'{"MaxResults": 1}')


@pytest.mark.parametrize("claimed", ["STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"])
def test_streaming_payloads_are_not_accepted(server, claimed):
    result = post(server, "RekognitionService.ListCollections", b"{}", headers={"X-Amz-Content-SHA256": claimed})
    expect(result, 400, "InvalidSignatureException", claimed)


def test_a_content_sha256_that_does_not_match_the_body_is_rejected(server, two_faces):
    signed_body = json.dumps({"CollectionId": "two-faces", "FaceIds": [two_faces[0]]}).encode()
    swapped = json.dumps({"CollectionId": "two-faces", "FaceIds": [two_faces[1]]}).encode()
    headers = sign_headers(
        server.endpoint,
        {"X-Amz-Target": "RekognitionService.DeleteFaces", "Content-Type": JSON_1_1,
         "X-Amz-Content-SHA256": hashlib.sha256(signed_body).hexdigest()},
        signed_body, server.key.access_key_id, server.key.secret_access_key,
    )
    expect(raw_post(server.endpoint, headers, swapped), 400, "InvalidSignatureException", "does not match")
    assert face_ids(server, "two-faces") == set(two_faces)


def test_a_matching_signed_content_sha256_is_accepted(server):
    result = post(server, "RekognitionService.ListCollections", b"{}", headers={"X-Amz-Content-SHA256": hashlib.sha256(b"{}").hexdigest()})
    assert result[0] == 200


def test_a_content_sha256_added_after_signing_is_rejected(server):
    result = post(server, "RekognitionService.ListCollections", b"{}", after_signing={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    expect(result, 400, "IncompleteSignatureException", "x-amz-content-sha256")


def test_a_case_reference_added_after_signing_is_rejected_and_not_audited_as_the_keys_claim(server):
    key = server.new_key(name="case-forger")  # a key of its own, so its rejection opens a window (and is written)
    result = signed_post(server.endpoint, "RekognitionService.ListCollections", b"{}", key.access_key_id, key.secret_access_key,
                         after_signing={"X-Facegate-Case-Ref": "CASE-FORGED-1"})
    expect(result, 400, "IncompleteSignatureException", "x-facegate-case-ref")
    assert not [r for r in records(server) if "CASE-FORGED-1" in json.dumps(r)]
    rejection = next(r for r in records(server) if r.get("request_id") == request_id(result[1]))
    assert (rejection["key_id"], rejection["organization"], rejection["error_type"], rejection["decision"], rejection["count"]) == (
        key.access_key_id, "default", "IncompleteSignatureException", None, 1)


def test_a_case_reference_signed_by_a_boto3_before_sign_hook_is_accepted_and_audited(server):
    client = server.client()

    def add_case_reference(request, **_):
        request.headers["X-Facegate-Case-Ref"] = "CASE-2026-0099"

    client.meta.events.register("before-sign.rekognition.*", add_case_reference)
    response = client.describe_collection(CollectionId="precious")
    request_id = response["ResponseMetadata"]["RequestId"]
    record = next(r for r in records(server) if r.get("request_id") == request_id)
    assert (record["operation"], record["case_reference"], record["decision"]) == ("DescribeCollection", "CASE-2026-0099", "allow")


@pytest.mark.parametrize("reference", ["x" * 129, "CASE\u00e9-1", "-leading-dash", "CASE\t1"])
def test_a_case_reference_must_be_short_plain_text(server, reference):
    result = post(server, "RekognitionService.ListCollections", b"{}", headers={"X-Facegate-Case-Ref": reference})
    expect(result, 400, "InvalidParameterException", "X-Facegate-Case-Ref")


def test_a_case_reference_of_128_characters_with_punctuation_is_accepted(server):
    reference = "CASE 2026/0042:a_b.c#d-" + "9" * 105
    assert post(server, "RekognitionService.ListCollections", b"{}", headers={"X-Facegate-Case-Ref": reference})[0] == 200
