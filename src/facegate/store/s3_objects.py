"""Reading objects from the operator's S3-compatible store (MinIO, Ceph RGW, Garage, SeaweedFS, S3).

Rekognition reads ``S3Object`` media itself; so does facegate, through boto3, from the one
endpoint its operator configures and with the operator's credentials, never the caller's
(which organisation may name which bucket is governance's business, not this module's).

Every read is bounded, so a missing, slow or unreachable store costs seconds and
``max_bytes`` of memory, never a hang or an unbounded download: a 2 s connect timeout, one
retry, a 10 s timeout on each socket read, a deadline on the whole read (checked between
64 KiB chunks), and a byte cap checked against ``ContentLength`` before the body is read and
again while it streams. The store is the operator's own: one that deliberately sent a byte
every few seconds could still hold a reading thread for as long as it kept that up.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

ENDPOINT_VARIABLE = "FACEGATE_S3_ENDPOINT_URL"
"""The S3-compatible store facegate reads from, e.g. ``http://minio:9000``. Unset: none."""

PROFILE_VARIABLE = "FACEGATE_S3_PROFILE"
"""An AWS profile (``~/.aws/credentials``, ``~/.aws/config``) with the store's credentials and
region. Unset: the usual ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``,
``AWS_DEFAULT_REGION`` variables, or boto3's default profile."""

DEFAULT_REGION = "us-east-1"
"""SigV4 needs a region; most self-hosted stores accept any, and MinIO's default is this one."""

CONNECT_TIMEOUT = 2.0
"""Seconds to open a connection: a store on the same network answers in milliseconds."""

READ_TIMEOUT = 10.0
"""Seconds any one socket read may wait for data."""

MAX_ATTEMPTS = 2
"""Attempts per request (one retry), so a store that is down costs at most two connects."""

CONNECTIONS = 40
"""Pooled connections to the store: one for each of the server's request threads (anyio's 40)."""

DEADLINE = 30.0
"""Seconds a whole read may take, however the store trickles its bytes: 15 MB takes well
under a second from a store on the same network."""

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ObjectLocation:
    """An object in the store: ``version`` None means the bucket's current version."""

    bucket: str
    key: str
    version: str | None = None

    def __str__(self) -> str:
        where = f"s3://{self.bucket}/{self.key}"
        return where if self.version is None else f"{where} (version {self.version})"


class ObjectUnavailable(Exception):
    """The object cannot be read: no store configured, the store unreachable, or the bucket,
    key or version missing or not readable with the operator's credentials."""


class ObjectTooLarge(Exception):
    """The object is larger than the reader was allowed to read; ``size`` in bytes, when the
    store said so before sending it (None when it only showed while streaming)."""

    def __init__(self, location: ObjectLocation, size: int | None, limit: int) -> None:
        shown = f"{size} bytes" if size is not None else f"over {limit} bytes"
        super().__init__(f"{location} is {shown}; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class ObjectReader(Protocol):
    """What the service reads media through: given at composition, so the service never
    builds an S3 client of its own (and tests hand it a reader for a test store)."""

    def read(self, location: ObjectLocation, max_bytes: int) -> bytes:
        """The object's bytes, at most ``max_bytes``; raises ``ObjectUnavailable`` or ``ObjectTooLarge``."""
        ...


class NoObjectStore:
    """The reader when the operator has configured no store: every read says so."""

    def read(self, location: ObjectLocation, max_bytes: int) -> bytes:
        raise ObjectUnavailable(
            f"{location}: no S3-compatible store is configured "
            f"(the operator sets {ENDPOINT_VARIABLE}); send the image as Bytes instead"
        )


NO_OBJECT_STORE = NoObjectStore()

_REASONS = {
    "NoSuchBucket": "the bucket does not exist",
    "NoSuchKey": "the object does not exist",
    "NoSuchVersion": "the version does not exist",
    "404": "the object does not exist",
    "InvalidArgument": "the store refused the request (is the version id valid?)",
}


class S3ObjectReader:
    """Reads through one boto3 S3 client with path-style addressing (``host/bucket/key``),
    which MinIO, Ceph RGW, Garage and SeaweedFS need and AWS S3 still accepts."""

    def __init__(self, client: Any, deadline: float = DEADLINE) -> None:
        self._client = client
        self._deadline = deadline

    @classmethod
    def connect(
        cls, endpoint_url: str, profile: str | None = None, read_timeout: float = READ_TIMEOUT, deadline: float = DEADLINE
    ) -> "S3ObjectReader":
        """A reader for ``endpoint_url``, with credentials and region from ``profile`` or the
        environment (boto3's usual chain). Nothing is contacted until the first read."""
        session = boto3.session.Session(profile_name=profile)
        config = Config(
            s3={"addressing_style": "path"},
            connect_timeout=CONNECT_TIMEOUT,
            read_timeout=read_timeout,
            retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            max_pool_connections=CONNECTIONS,
        )
        client = session.client(
            "s3", endpoint_url=endpoint_url, region_name=session.region_name or DEFAULT_REGION, config=config
        )
        return cls(client, deadline)

    def read(self, location: ObjectLocation, max_bytes: int) -> bytes:
        buffer = io.BytesIO()
        self.copy_to(location, buffer, max_bytes)
        return buffer.getvalue()

    def copy_to(self, location: ObjectLocation, sink: BinaryIO, max_bytes: int) -> int:
        """Stream the object into ``sink`` (a file, for media too large to hold in memory);
        returns its size in bytes. At most ``max_bytes + 1`` bytes are ever read."""
        started = time.monotonic()
        request = {"Bucket": location.bucket, "Key": location.key}
        if location.version is not None:
            request["VersionId"] = location.version
        try:
            response = self._client.get_object(**request)
            body = response["Body"]
            try:
                declared = response.get("ContentLength")
                if declared is not None and declared > max_bytes:
                    raise ObjectTooLarge(location, declared, max_bytes)
                return self._stream(location, body, sink, max_bytes, started)
            finally:
                body.close()  # an unread remainder is dropped with its connection, not downloaded
        except ClientError as exc:
            raise ObjectUnavailable(_refusal(location, exc)) from exc
        except NoCredentialsError as exc:
            raise ObjectUnavailable(
                f"{location}: facegate has no S3 credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or {PROFILE_VARIABLE})"
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, a broken stream, bad parameters
            raise ObjectUnavailable(f"{location}: the store did not answer ({exc})") from exc

    def _stream(self, location: ObjectLocation, body: Any, sink: BinaryIO, max_bytes: int, started: float) -> int:
        size = 0
        while chunk := body.read(min(_CHUNK, max_bytes + 1 - size)):
            size += len(chunk)
            if size > max_bytes:
                raise ObjectTooLarge(location, None, max_bytes)
            if time.monotonic() - started > self._deadline:
                raise ObjectUnavailable(f"{location}: the store took over {self._deadline:g} s to send it")
            sink.write(chunk)
        return size


def _refusal(location: ObjectLocation, exc: ClientError) -> str:
    """Why the store refused, in words: missing, or denied to facegate's credentials."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "")) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    reason = _REASONS.get(code, "access denied to facegate's S3 credentials" if code in ("AccessDenied", "403") else None)
    return f"{location}: {reason or error.get('Message') or 'the store refused the request'} ({code})"


def configured_reader(environ: Mapping[str, str] = os.environ) -> ObjectReader:
    """The reader the operator's settings ask for: ``$FACEGATE_S3_ENDPOINT_URL`` with
    ``$FACEGATE_S3_PROFILE`` (or the usual AWS variables), else ``NO_OBJECT_STORE``."""
    endpoint = environ.get(ENDPOINT_VARIABLE)
    if not endpoint:
        return NO_OBJECT_STORE
    return S3ObjectReader.connect(endpoint, environ.get(PROFILE_VARIABLE) or None)
