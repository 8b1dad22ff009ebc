"""A real S3 endpoint for tests: moto's server mode (``ThreadedMotoServer``) on a free port.

It speaks S3's HTTP API, so facegate's reader runs unchanged against it. moto accepts any
credentials until IAM checks are switched on (``enforcing_iam``).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

ADMIN = {"aws_access_key_id": "test-admin", "aws_secret_access_key": "test-admin-secret"}
"""Credentials of whoever fills the store in a test; moto accepts them while IAM is off."""


@contextmanager
def moto_endpoint() -> Iterator[str]:
    """A fresh in-process S3 endpoint; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """One moto server per test module that imports this fixture."""
    with moto_endpoint() as url:
        yield url


def client_with_bucket(endpoint: str, bucket: str) -> Any:
    """An administrator's S3 client for ``endpoint``, with ``bucket`` created."""
    client = admin_client(endpoint)
    client.create_bucket(Bucket=bucket)
    return client


def admin_client(endpoint: str, service: str = "s3") -> Any:
    """A boto3 client of the store's administrator (path-style, like facegate's reader)."""
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}), **ADMIN
    )


def versioned_bucket(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def user_reading_only(endpoint: str, user: str, bucket: str) -> dict[str, str]:
    """An IAM user allowed s3:GetObject in ``bucket`` and nothing else; its access key."""
    iam = admin_client(endpoint, "iam")
    iam.create_user(UserName=user)
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}
    iam.put_user_policy(
        UserName=user, PolicyName="read-one-bucket",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


@contextmanager
def enforcing_iam(endpoint: str) -> Iterator[None]:
    """moto checks every request's credentials and IAM policies until the block ends.
    (The switch is process-wide in moto; tests in one process run one at a time.)"""
    _reset_auth(endpoint, "0")
    try:
        yield
    finally:
        _reset_auth(endpoint, "inf")


def _reset_auth(endpoint: str, unauthenticated_requests: str) -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=unauthenticated_requests.encode(), method="POST",
        headers={"Content-Type": "text/plain"},
    )
    urllib.request.urlopen(request, timeout=10).read()
