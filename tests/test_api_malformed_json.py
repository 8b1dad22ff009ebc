"""Malformed and hostile JSON bodies get a 400 AWS error, never a 500: the parser refuses
what is not strict JSON (SerializationException), the validator refuses what no member can
hold (InvalidParameterException naming the member)."""

from __future__ import annotations

import pytest
from botocore.model import ShapeResolver

from facegate.api.service_model import operation_model
from facegate.api.validation import parse_body, validate
from facegate.service.exceptions import InvalidParameterException
from tests.support.server import running_server
from tests.support.signing import signed_post

FACE_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        running.client().create_collection(CollectionId="exists")
        yield running


def post(server, operation: str, body: bytes):
    return signed_post(server.endpoint, f"RekognitionService.{operation}", body, server.key.access_key_id, server.key.secret_access_key)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


SERIALIZATION_CASES = {
    "integer of 5000 digits in an unknown member": ("ListFaces", b'{"CollectionId": "exists", "Other": ' + b"9" * 5000 + b"}"),
    "integer of 5000 digits deep in a list": ("ListFaces", b'{"CollectionId": "exists", "FaceIds": [[' + b"1" * 5000 + b"]]}"),
    "integer of 5000 digits in MaxResults": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": ' + b"1" * 5000 + b"}"),
    "arrays nested 2,000 deep": ("ListFaces", b'{"CollectionId": "exists", "Other": ' + nested(2000) + b"}"),
    "arrays nested 100,000 deep in a map": ("CreateCollection", b'{"CollectionId": "deep", "Tags": {"a": ' + nested(100_000) + b"}}"),
    "objects nested 2,000 deep": ("ListFaces", b'{"a": ' * 2000 + b"1" + b"}" * 2000),
    "NaN": ("SearchFaces", b'{"CollectionId": "exists", "FaceId": "' + FACE_ID.encode() + b'", "FaceMatchThreshold": NaN}'),
    "Infinity": ("SearchFaces", b'{"CollectionId": "exists", "FaceId": "' + FACE_ID.encode() + b'", "FaceMatchThreshold": Infinity}'),
    "-Infinity": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": -Infinity}'),
    "a duplicate key": ("ListFaces", b'{"CollectionId": "exists", "CollectionId": "other"}'),
    "bytes that are not UTF-8": ("ListFaces", b'{"CollectionId": "exists\xff"}'),
    "a UTF-8 byte order mark": ("ListCollections", b"\xef\xbb\xbf{}"),
    "UTF-16": ("ListCollections", "{}".encode("utf-16")),
    "a top-level list": ("ListCollections", b"[]"),
}


@pytest.mark.parametrize("operation, body", SERIALIZATION_CASES.values(), ids=SERIALIZATION_CASES.keys())
def test_a_body_that_is_not_strict_json_is_a_serialization_exception(server, operation, body):
    status, headers, answer = post(server, operation, body)
    assert (status, answer.get("__type")) == (400, "SerializationException"), answer
    assert "x-amzn-requestid" in {k.lower() for k in headers}


INVALID_PARAMETER_CASES = {
    "400-digit MaxResults": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": ' + b"9" * 400 + b"}", "MaxResults"),
    "negative 400-digit MaxResults": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": -' + b"9" * 400 + b"}", "MaxResults"),
    "400-digit FaceMatchThreshold": (
        "SearchFaces", b'{"CollectionId": "exists", "FaceId": "' + FACE_ID.encode() + b'", "FaceMatchThreshold": ' + b"9" * 400 + b"}",
        "FaceMatchThreshold"),
    "1e400 FaceMatchThreshold": (
        "SearchFaces", b'{"CollectionId": "exists", "FaceId": "' + FACE_ID.encode() + b'", "FaceMatchThreshold": 1e400}',
        "FaceMatchThreshold"),
    "1e400 MaxResults": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": 1e400}', "MaxResults"),
    "MaxFacesToIndex past 32 bits": (
        "IndexFaces", b'{"CollectionId": "exists", "Image": {"Bytes": "AAAA"}, "MaxFacesToIndex": 99999999999}', "MaxFacesToIndex"),
    "a lone surrogate in NextToken": ("ListFaces", b'{"CollectionId": "exists", "NextToken": "\\ud800"}', "NextToken"),
    "a lone low surrogate in NextToken": ("ListFaces", b'{"CollectionId": "exists", "NextToken": "a\\udc00b"}', "NextToken"),
    "NUL in NextToken": ("ListFaces", b'{"CollectionId": "exists", "NextToken": "a\\u0000b"}', "NextToken"),
    "NUL in a ResourceArn": ("ListTagsForResource", b'{"ResourceArn": "arn:aws:rekognition:x\\u0000"}', "ResourceArn"),
    "a lone surrogate as a tag key": ("CreateCollection", b'{"CollectionId": "t", "Tags": {"\\ud800": "v"}}', "Tags"),
    "lists nested 500 deep inside a map": ("CreateCollection", b'{"CollectionId": "t", "Tags": {"a": ' + nested(500) + b"}}", "Tags.a"),
    "a list of 500 levels where a number belongs": ("ListFaces", b'{"CollectionId": "exists", "MaxResults": ' + nested(500) + b"}", "MaxResults"),
    "a member name of a megabyte": ("ListFaces", b'{"CollectionId": "exists", "' + b"M" * 1_000_000 + b'": 1}', "MMMM"),
}


@pytest.mark.parametrize("operation, body, field", INVALID_PARAMETER_CASES.values(), ids=INVALID_PARAMETER_CASES.keys())
def test_a_value_no_member_can_hold_is_an_invalid_parameter_naming_it(server, operation, body, field):
    status, _, answer = post(server, operation, body)
    assert (status, answer.get("__type")) == (400, "InvalidParameterException"), answer
    assert field in answer["Message"] and len(answer["Message"]) < 1000


def test_minus_zero_is_zero(server):
    status, _, answer = post(server, "ListFaces", b'{"CollectionId": "exists", "MaxResults": -0}')
    assert (status, answer.get("Faces")) == (200, []), answer


def test_a_surrogate_pair_is_a_character_not_a_lone_surrogate():
    params = parse_body(b'{"CollectionId": "exists", "NextToken": "\\ud83d\\ude00"}')
    assert validate(operation_model("ListFaces").input_shape, params)["NextToken"] == "\U0001F600"


def test_the_server_keeps_serving_after_every_hostile_body(server):
    assert server.client().describe_collection(CollectionId="exists")["FaceCount"] == 0


TIMESTAMPED = ShapeResolver({"Request": {"type": "structure", "members": {"At": {"shape": "When"}}}, "When": {"type": "timestamp"}})


@pytest.mark.parametrize("value", [1e20, -1e20, 10**30, float("inf")])
def test_a_timestamp_outside_the_calendar_is_an_invalid_parameter(value):
    """No face operation takes a timestamp today; the validator is ready for one that does."""
    with pytest.raises(InvalidParameterException, match="At"):
        validate(TIMESTAMPED.get_shape_by_name("Request"), {"At": value})


def test_a_timestamp_in_range_becomes_a_datetime():
    assert validate(TIMESTAMPED.get_shape_by_name("Request"), {"At": 0})["At"].year == 1970
