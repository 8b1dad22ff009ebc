"""Hand-built SigV4 requests, for what boto3 will not send: bad bodies, old clocks, forged keys."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def signed_post(
    endpoint: str,
    target: str,
    body: bytes,
    key_id: str,
    secret: str,
    signed_at: dt.datetime | None = None,
) -> tuple[int, dict, dict]:
    """POST a SigV4-signed AWS JSON 1.1 request; returns (status, headers, parsed JSON body)."""
    headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
    request = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
    when = signed_at or dt.datetime.now(dt.timezone.utc)
    request.context["timestamp"] = when.strftime(SIGV4_TIMESTAMP)
    signer = SigV4Auth(Credentials(key_id, secret), "rekognition", "us-east-1")
    signer._modify_request_before_signing(request)  # sets X-Amz-Date and Host from the timestamp above
    signature = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    signer._inject_signature_to_request(request, signature)
    return raw_post(endpoint, dict(request.headers.items()), body)


def raw_post(endpoint: str, headers: dict, body: bytes) -> tuple[int, dict, dict]:
    http = urllib.request.Request(endpoint + "/", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(http, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"{}")
