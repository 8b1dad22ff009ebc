"""A real facegate server on a free localhost port, in a background thread, for boto3 tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from facegate.bench.local_server import serving
from facegate.engine.pipeline import FaceEngine
from facegate.governance.identity import create_organization
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.server import Facegate
from facegate.store.s3_objects import ObjectReader


@dataclass
class RunningServer:
    facegate: Facegate
    endpoint: str
    key: NewAccessKey

    def client(self, key: NewAccessKey | None = None, validate: bool = True, **config: object):  # type: ignore[no-untyped-def]
        """A boto3 Rekognition client; ``validate=False`` lets bad params reach the server."""
        key = key or self.key
        return boto3.client(
            "rekognition",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(parameter_validation=validate, retries={"max_attempts": 1}, **config),
        )

    def new_key(
        self, name: str = "test", owner: str = "default", sector: str = "commercial", purpose: str = "photo_library",
        flags: tuple[str, ...] = (),
    ) -> NewAccessKey:
        """A key of ``owner`` (created with ``sector`` and ``flags`` if new) for ``purpose``."""
        with self.facegate.store.reader() as tx:
            exists = tx.get_organization(owner) is not None
        if not exists and owner != "default":
            create_organization(self.facegate.store, owner, sector, flags)
        return create_access_key(self.facegate.store, self.facegate.secrets, name, owner, purpose)


@contextmanager
def running_server(
    data_dir: Path, database_url: str | None = None, objects: ObjectReader | None = None, engine: FaceEngine | None = None
) -> Iterator[RunningServer]:
    """``database_url``: another database than the data directory's SQLite file (PostgreSQL);
    ``objects``: the S3-compatible store ``S3Object`` media is read from (default: the environment's);
    ``engine``: the server's default face model (default: the configured one)."""
    facegate = Facegate.open(data_dir, engine=engine, database_url=database_url, objects=objects)
    try:
        with serving(facegate.app()) as endpoint:
            yield RunningServer(facegate, endpoint, create_access_key(facegate.store, facegate.secrets, "tests"))
    finally:
        facegate.store.close()
