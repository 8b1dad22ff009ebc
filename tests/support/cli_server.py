"""Clients for a `facegate serve` child process, with a key made by the `facegate` CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from facegate.bench.local_server import FACEGATE


def client_factory(data_dir: Path, port: int, name: str) -> Callable[[], Any]:
    """Create an access key with `facegate keys create` and return a maker of boto3 clients
    for http://127.0.0.1:PORT (each a fresh connection pool)."""
    key = json.loads(subprocess.run(
        [FACEGATE, "keys", "create", "--name", name, "--data-dir", str(data_dir), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout)

    def client() -> Any:
        return boto3.client(
            "rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
            config=Config(retries={"total_max_attempts": 1}, read_timeout=60, connect_timeout=5),  # no retries
        )

    return client
