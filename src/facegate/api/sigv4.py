"""AWS Signature Version 4 verification for service ``rekognition``, any region.

We rebuild the request exactly as the client signed it (only its SignedHeaders, its
X-Amz-Date) and let botocore's own ``SigV4Auth`` produce the canonical request, the
string to sign and the signature: the same code that signed it on the client side, so
no canonicalisation subtleties are re-implemented here.

A valid signature is not enough: it must cover everything the server acts on. The
operation (``X-Amz-Target``), the body's framing (``Content-Type``), the host and the date
must be signed, as boto3 and the AWS CLI always do, and so must any other header the
server reads (a case reference); the body's SHA-256 is part of every signature, since
Rekognition has no unsigned or streaming payloads. Otherwise a captured request could be
replayed as another operation, with another body, or under another case reference.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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
REQUIRED_SIGNED_HEADERS = ("content-type", "host", "x-amz-date", "x-amz-target")
"""What boto3 and the AWS CLI sign on every AWS JSON request, and all the server needs to
know which operation on which bytes was meant."""
_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=(?P<headers>[a-z0-9\-;]+),\s*Signature=(?P<signature>[0-9a-f]{64})\s*$"
)
_CLAIMED_KEY = re.compile(r"\bCredential=([^/,\s]{1,128})")
_PAYLOAD_HASH = "x-amz-content-sha256"


class Key(Protocol):
    """What a key lookup gives: the secret to check a signature with. Whatever else it
    carries (who holds the key) reaches the handler on the ``Caller``, so the caller is
    known from the same lookup that authenticated it."""

    @property
    def secret_access_key(self) -> str: ...


K = TypeVar("K", bound=Key)


@dataclass(frozen=True)
class Caller(Generic[K]):
    """An authenticated caller: the access key, the region it signed for, and the key as looked up."""

    access_key_id: str
    region: str
    key: K


def claimed_access_key(authorization: str | None) -> str | None:
    """The access key id an Authorization header claims (at most 128 characters), whether
    or not the rest of it is well formed: what the audit records for a rejected request."""
    found = _CLAIMED_KEY.search(authorization or "")
    return found[1] if found else None


def verify(
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    key_for: Callable[[str], K | None],
    read_headers: Collection[str] = (),
    now: dt.datetime | None = None,
) -> Caller[K]:
    """The caller, if ``headers`` (every name/value pair as received, names in lower case)
    carry a valid SigV4 signature over this request that covers ``REQUIRED_SIGNED_HEADERS``,
    each of ``read_headers`` that was sent, and the body."""
    pairs = list(headers)
    repeated = sorted(name for name, n in Counter(name for name, _ in pairs).items() if n > 1)
    sent = dict(pairs)
    authorization = sent.get("authorization")
    if not authorization:
        raise MissingAuthenticationTokenException("Missing Authentication Token: send an AWS SigV4 Authorization header.")
    match = _AUTHORIZATION.match(authorization.strip())
    if match is None:
        raise IncompleteSignatureException(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' in AWS4-HMAC-SHA256 form, "
            "each once and nothing else."
        )
    amz_date = sent.get("x-amz-date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise IncompleteSignatureException("The request must carry an X-Amz-Date header in ISO 8601 basic form.") from None
    if match["service"] != SERVICE or match["date"] != amz_date[:8]:
        raise IncompleteSignatureException(f"Credential scope must be <date>/<region>/{SERVICE}/aws4_request for this request.")
    signed_headers = match["headers"].split(";")
    _check_coverage(signed_headers, sent, repeated, read_headers)
    body_hash = _check_payload_hash(sent.get(_PAYLOAD_HASH), body)

    key = key_for(match["key"])
    if key is None:
        raise UnrecognizedClientException("The security token included in the request is invalid.")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now - signed_at > MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature expired: {amz_date} is now earlier than {(now - MAX_CLOCK_SKEW):%Y%m%dT%H%M%SZ} "
            f"({now:%Y%m%dT%H%M%SZ} - 15 min.)"
        )
    if signed_at - now > MAX_CLOCK_SKEW:
        raise InvalidSignatureException(
            f"Signature not yet current: {amz_date} is still later than {(now + MAX_CLOCK_SKEW):%Y%m%dT%H%M%SZ} "
            f"({now:%Y%m%dT%H%M%SZ} + 15 min.)"
        )
    request = AWSRequest(method=method, url=url, data=body, headers={h: sent[h] for h in signed_headers})
    request.context["timestamp"] = amz_date
    request.context["payload_signing_enabled"] = True  # even behind TLS: the body hash is always signed
    signer = SigV4Auth(Credentials(match["key"], key.secret_access_key), SERVICE, match["region"])
    canonical = signer.canonical_request(request)
    if canonical.rpartition("\n")[2] != body_hash:  # the invariant the checks above establish
        raise InvalidSignatureException("The signature does not cover the request body.")
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        raise InvalidSignatureException(
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method."
        )
    return Caller(access_key_id=match["key"], region=match["region"], key=key)


def _check_coverage(signed: list[str], sent: dict[str, str], repeated: list[str], read_headers: Collection[str]) -> None:
    """Every header the server acts on is sent once and signed, and every signed one was sent."""
    acted_on = {"authorization", _PAYLOAD_HASH, *REQUIRED_SIGNED_HEADERS, *read_headers, *signed}
    ambiguous = [h for h in repeated if h in acted_on]
    if ambiguous:
        raise IncompleteSignatureException(f"The {', '.join(ambiguous)} header must be sent only once.")
    if len(set(signed)) != len(signed) or any(h not in sent for h in signed):
        raise IncompleteSignatureException("SignedHeaders must name each header once, and only headers that were sent.")
    missing = [h for h in REQUIRED_SIGNED_HEADERS if h not in signed]
    if missing:
        raise IncompleteSignatureException(
            f"SignedHeaders must include {', '.join(REQUIRED_SIGNED_HEADERS)}; missing: {', '.join(missing)}."
        )
    unsigned = [h for h in (*read_headers, _PAYLOAD_HASH) if h in sent and h not in signed]
    if unsigned:
        raise IncompleteSignatureException(f"The {', '.join(unsigned)} header must be signed (include it in SignedHeaders).")


def _check_payload_hash(claimed: str | None, body: bytes) -> str:
    """The body's SHA-256 (hex), after refusing a claimed hash that is not exactly it.

    ``UNSIGNED-PAYLOAD`` and the ``STREAMING-*`` forms exist for S3; honouring them here
    would let anyone who saw a signed request send it again with another body.
    """
    actual = hashlib.sha256(body).hexdigest()
    if claimed is None:
        return actual
    if claimed == "UNSIGNED-PAYLOAD" or claimed.startswith("STREAMING-"):
        raise InvalidSignatureException(f"X-Amz-Content-SHA256 {claimed} is not accepted: Rekognition requests sign their body.")
    if not hmac.compare_digest(claimed.encode(), actual.encode()):
        raise InvalidSignatureException("The provided X-Amz-Content-SHA256 does not match the request body.")
    return actual
