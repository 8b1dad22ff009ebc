"""Hand-built SigV4 requests, for what boto3 will not send: bad bodies, old clocks, forged
keys, and signatures that cover only some headers (with others added after signing)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import urllib.parse
from collections.abc import Collection, Mapping, Sequence

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

JSON_1_1 = "application/x-amz-json-1.1"


def sign_headers(
    endpoint: str,
    headers: Mapping[str, str],
    body: bytes,
    key_id: str,
    secret: str,
    signed: Collection[str] | None = None,
    signed_at: dt.datetime | None = None,
) -> dict[str, str]:
    """The headers of a POST / signed with botocore's SigV4Auth: ``headers`` whose lower-case
    names are in ``signed`` (None: all of them, as boto3 signs) are covered by the signature,
    with Host and X-Amz-Date, which botocore always signs; the others are sent beside it."""
    covered = {k: v for k, v in headers.items() if signed is None or k.lower() in signed}
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=covered)
    when = signed_at or dt.datetime.now(dt.timezone.utc)
    request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
    signer = SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1")
    signer._modify_request_before_signing(request)  # sets X-Amz-Date and Host from the timestamp above
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signer._inject_signature_to_request(request, signature)
    return {**dict(request.headers.items()), **{k: v for k, v in headers.items() if k not in covered}}


def signed_post(
    endpoint: str,
    target: str,
    body: bytes,
    key_id: str,
    secret: str,
    signed_at: dt.datetime | None = None,
    headers: Mapping[str, str] | None = None,
    signed: Collection[str] | None = None,
    after_signing: Mapping[str, str] | None = None,
) -> tuple[int, dict, dict]:
    """POST a SigV4-signed AWS JSON 1.1 request; returns (status, headers, parsed JSON body).

    ``headers`` are sent besides X-Amz-Target and Content-Type; ``signed`` chooses which
    of them all are signed (see ``sign_headers``); ``after_signing`` are then added or
    replaced, as an attacker holding a captured request would."""
    sent = {"X-Amz-Target": target, "Content-Type": JSON_1_1, **(headers or {})}
    final = sign_headers(endpoint, sent, body, key_id, secret, signed, signed_at)
    return raw_post(endpoint, {**final, **(after_signing or {})}, body)


def raw_post(endpoint: str, headers: Mapping[str, str] | Sequence[tuple[str, str]], body: bytes) -> tuple[int, dict, dict]:
    return raw_request(endpoint, "POST", "/", headers, body)


def raw_request(
    endpoint: str, method: str, path: str, headers: Mapping[str, str] | Sequence[tuple[str, str]], body: bytes = b""
) -> tuple[int, dict, dict]:
    """Send exactly these headers (a list of pairs may repeat a name); returns (status,
    headers, the body parsed as JSON, or ``{"raw": text}`` when it is not JSON)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    url = urllib.parse.urlsplit(endpoint)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        names = {name.lower() for name, _ in pairs}
        connection.putrequest(method, path, skip_host="host" in names, skip_accept_encoding=True)
        for name, value in pairs:
            connection.putheader(name, value)
        if "content-length" not in names:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        data = response.read()
        try:
            parsed = json.loads(data or b"{}")
        except ValueError:
            parsed = {"raw": data.decode("latin-1")}
        return response.status, dict(response.getheaders()), parsed
    finally:
        connection.close()
