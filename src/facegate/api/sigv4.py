"""AWS Signature Version 4 verification for service ``rekognition``, any region.

We rebuild the request exactly as the client signed it (only its SignedHeaders, its
X-Amz-Date) and let botocore's own ``SigV4Auth`` produce the canonical request, the
string to sign and the signature: the same code that signed it on the client side, so
no canonicalisation subtleties are re-implemented here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from facegate.api.exceptions import (
    IncompleteSignatureException,
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

SERVICE = "rekognition"
MAX_CLOCK_SKEW = dt.timedelta(minutes=15)
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the access key and the region it signed for."""

    access_key_id: str
    region: str


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: dt.datetime | None = None,
) -> Caller:
    """The caller, if ``headers`` carry a valid SigV4 signature over this request."""
    authorization = headers.get("authorization")
    if not authorization:
        raise MissingAuthenticationTokenException("Missing Authentication Token: send an AWS SigV4 Authorization header.")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise IncompleteSignatureException(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' in AWS4-HMAC-SHA256 form."
        )
    amz_date = headers.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise IncompleteSignatureException("The request must carry an X-Amz-Date header in ISO 8601 basic form.") from None
    if match["service"] != SERVICE or match["date"] != amz_date[:8]:
        raise IncompleteSignatureException(f"Credential scope must be <date>/<region>/{SERVICE}/aws4_request for this request.")
    signed_headers = match["headers"].split(";")
    if "host" not in signed_headers or any(h not in headers for h in signed_headers):
        raise IncompleteSignatureException("SignedHeaders must include host and name only headers that were sent.")

    secret = secret_for(match["key"])
    if secret is None:
        raise UnrecognizedClientException("The security token included in the request is invalid.")
    now = now or dt.datetime.now(dt.timezone.utc)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_CLOCK_SKEW):%Y%m%dT%H%M%SZ} "
            f"({now:%Y%m%dT%H%M%SZ} - 15 min.)"
        )
    claimed = headers.get("x-amz-content-sha256")
    if claimed and claimed != "UNSIGNED-PAYLOAD" and not hmac.compare_digest(claimed, hashlib.sha256(body).hexdigest()):
        raise InvalidSignatureException("The provided X-Amz-Content-SHA256 does not match the request body.")
    request = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed_headers})
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(match["key"], secret), SERVICE, match["region"])
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise InvalidSignatureException(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Caller(access_key_id=match["key"], region=match["region"])
