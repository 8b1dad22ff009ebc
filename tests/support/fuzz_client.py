"""Sending fuzz requests to a running server, and judging each answer by the AWS contract.

Raw requests go over plain HTTP connections, signed with botocore's SigV4 (or
deliberately not); the rest go through a boto3 client with ``parameter_validation`` off,
whose raw HTTP answer is captured too, so both are judged by the same rules.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import boto3
from botocore import xform_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import create_parser

from facegate.api.service_model import operation_model
from tests.support.fuzz_requests import FuzzRequest
from tests.support.wire_contract import assert_matches_output_shape

CONTENT_TYPE = "application/x-amz-json-1.1"
REQUEST_TIMEOUT = 120
"""Seconds to wait for one answer: a 40 MP image takes the detector several seconds."""


@dataclass(frozen=True)
class Answer:
    status: int | None
    """None when no answer came (connection dropped, timeout): ``failure`` says why."""
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    failure: str | None = None

    def summary(self) -> str:
        if self.status is None:
            return f"no answer ({self.failure})"
        text = self.body[:200].decode("utf-8", "replace")
        return f"HTTP {self.status} {text}"


class FuzzClient:
    """Sends requests as the holder of ``key_id``; ``sent`` counts requests to ``/`` (not /health)."""

    def __init__(self, port: int, key_id: str, secret: str) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self.key_id, self.secret = key_id, secret
        self.sent = 0
        self._captured: Answer | None = None
        self.boto3 = self._boto3_client()

    def _boto3_client(self) -> Any:
        client = boto3.client(
            "rekognition", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
            config=Config(parameter_validation=False, retries={"max_attempts": 1},
                          read_timeout=REQUEST_TIMEOUT, connect_timeout=5),
        )
        client.meta.events.register("after-call.rekognition", self._capture)
        return client

    def _capture(self, http_response: Any, **_: Any) -> None:
        headers = {k.lower(): v for k, v in http_response.headers.items()}
        self._captured = Answer(http_response.status_code, headers, http_response.content)

    def call(self, operation: str, **params: Any) -> dict[str, Any]:
        """A boto3 call for setting the world up; raises on any error."""
        self.sent += 1
        return getattr(self.boto3, xform_name(operation))(**params)  # type: ignore[no-any-return]

    def send(self, request: FuzzRequest) -> Answer:
        self.sent += 1
        return self._send_boto3(request) if request.via_boto3 else self._send_raw(request)

    def _send_boto3(self, request: FuzzRequest) -> Answer:
        self._captured = None
        try:
            getattr(self.boto3, xform_name(request.operation))(**request.boto3_params())
        except ClientError:
            pass
        except BotoCoreError as exc:
            return Answer(None, {}, b"", f"boto3: {exc}")
        assert self._captured is not None, "boto3 answered without an HTTP response"
        return self._captured

    def _send_raw(self, request: FuzzRequest) -> Answer:
        body = request.body()
        headers = self._headers(request, body)
        # A fresh connection each time: a kept-alive one that the server timed out would turn
        # into a send error that is the client's doing, not the server's.
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("POST", "/", body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Answer(None, {}, b"", f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def _headers(self, request: FuzzRequest, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": CONTENT_TYPE}
        target = request.header_target()
        if target is not None:
            headers["X-Amz-Target"] = target
        envelope = request.envelope
        if envelope == "unsigned":
            return headers
        if envelope == "garbled-authorization":
            return {**headers, "Authorization": "AWS4-HMAC-SHA256 Credential=oops"}
        key_id, secret = {
            "signed": (self.key_id, self.secret),
            "forged-signature": (self.key_id, "not-the-secret"),
            "unknown-key": ("AKIAFUZZUNKNOWNKEY00", "whatever"),
        }[envelope]
        signed = AWSRequest(method="POST", url=self.endpoint + "/", data=body, headers=headers)
        SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1").add_auth(signed)
        return dict(signed.headers.items())


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
            return response.status == 200 and json.loads(response.read()) == {"status": "ok"}
    except (OSError, ValueError):
        return False


def problems(request: FuzzRequest, answer: Answer, known_errors: frozenset[str]) -> list[str]:
    """What is wrong with ``answer`` to ``request`` by the AWS JSON 1.1 contract (empty: nothing)."""
    if answer.status is None:
        return [f"no answer: {answer.failure}"]
    found = []
    if answer.status >= 500:
        found.append(f"HTTP {answer.status}")
    elif not (answer.status == 200 or 400 <= answer.status < 500):
        found.append(f"unexpected HTTP {answer.status}")
    if "x-amzn-requestid" not in answer.headers:
        found.append("no x-amzn-RequestId header")
    content_type = answer.headers.get("content-type", "")
    if content_type.split(";")[0].strip() != CONTENT_TYPE:
        found.append(f"content-type {content_type!r}, not {CONTENT_TYPE}")
    try:
        body = json.loads(answer.body)
    except ValueError:
        return [*found, f"the body is not JSON: {answer.body[:100]!r}"]
    if not isinstance(body, dict):
        return [*found, "the body is not a JSON object"]
    if answer.status == 200:
        found += _success_problems(request, answer)
    else:
        found += _error_problems(request, body, known_errors)
    return found


def _success_problems(request: FuzzRequest, answer: Answer) -> list[str]:
    found = []
    if request.must_reject:
        found.append("accepted a request that breaks the model's rules")
    if request.expected:
        found.append(f"succeeded; expected {' or '.join(sorted(request.expected))}")
    model = operation_model(request.operation)
    if model is None:
        return [*found, f"succeeded for {request.operation!r}, which is no Rekognition operation"]
    parsed = create_parser("json").parse({"status_code": 200, "headers": answer.headers, "body": answer.body}, model.output_shape)
    try:
        assert_matches_output_shape(request.operation, parsed)
    except AssertionError as exc:
        found.append(f"the response does not match {request.operation}'s output shape: {exc}")
    return found


def _error_problems(request: FuzzRequest, body: dict[str, Any], known_errors: frozenset[str]) -> list[str]:
    found = []
    kind = body.get("__type")
    name = kind.rpartition("#")[2] if isinstance(kind, str) else None
    if name not in known_errors:
        found.append(f"__type {kind!r} is not a Rekognition or AWS error name")
    if not isinstance(body.get("Message"), str):
        found.append("Message is missing or not a string")
    if request.expected and name not in request.expected:
        found.append(f"{name}; expected {' or '.join(sorted(request.expected))}")
    return found
