"""The composition root: data directory -> store, engine, service, keys -> ASGI app.

This is the only module that knows every layer. Requests flow api -> gate -> service:
the handler given to the API takes the caller's identity from the key lookup SigV4
authenticated it with and hands every request to the governance gate, so no path reaches
the service without a policy decision and an audit record. Requests refused before the
gate are recorded by the rejection log.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from facegate.api.app import RequestContext, create_app
from facegate.api.sigv4 import Caller
from facegate.console.app import create_console
from facegate.engine.face_models import configured_face_model, load_engine
from facegate.engine.pipeline import FaceEngine
from facegate.governance.gate import Gate, Request
from facegate.governance.keys import SigningKey, key_lookup
from facegate.governance.policy import Policies
from facegate.governance.rejections import RejectionLog
from facegate.governance.video_worker import start_video_workers
from facegate.service.context import Service
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.s3_objects import NO_OBJECT_STORE, ObjectReader, configured_reader
from facegate.store.secrets import SecretBox


DATA_DIR_VARIABLE = "FACEGATE_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_VARIABLE, "./data"))


DATABASE_URL_VARIABLE = "FACEGATE_DATABASE_URL"
REPORTS_DIR_VARIABLE = "FACEGATE_REPORTS_DIR"
"""Where the console's accuracy page finds ``facegate evaluate`` reports (default ./reports)."""


def configured_database_url(data_dir: Path) -> str:
    """``$FACEGATE_DATABASE_URL`` (e.g. ``postgresql+psycopg://user@host/db``), else the
    embedded SQLite file in the data directory. The master key and custom policy packs stay
    in the data directory either way."""
    return os.environ.get(DATABASE_URL_VARIABLE) or sqlite_url(data_dir)


VECTOR_SEARCH_VARIABLE = "FACEGATE_VECTOR_SEARCH"
VECTOR_SEARCH_CHOICES = {"pgvector": True, "exact": False}


def configured_vector_search() -> bool:
    """``$FACEGATE_VECTOR_SEARCH``: ``exact`` (the default) searches facegate's own index on
    every backend, a snapshot each node maps and keeps current from the database's index log;
    ``pgvector`` searches in the database where it has the extension, so nodes hold nothing.
    The default is the one whose answers are right: pgvector's HNSW graph missed half the
    real mates at 1M faces (``bench scale --backend pgvector``), and in identification a
    missed face is a false non-match; facegate's index found all of them, faster."""
    value = os.environ.get(VECTOR_SEARCH_VARIABLE, "exact")
    if value not in VECTOR_SEARCH_CHOICES:
        raise ValueError(f"{VECTOR_SEARCH_VARIABLE} must be one of {', '.join(VECTOR_SEARCH_CHOICES)}, not {value!r}")
    return VECTOR_SEARCH_CHOICES[value]


INDEX_DIRECTORY = "index"
"""Where in the data directory the face index snapshot lives (``store/index_snapshot.py``)."""


@dataclass
class Facegate:
    """Everything a running instance holds."""

    data_dir: Path
    store: Store
    secrets: SecretBox
    engine: FaceEngine
    objects: ObjectReader = NO_OBJECT_STORE

    @classmethod
    def open(
        cls, data_dir: Path, engine: FaceEngine | None = None, database_url: str | None = None,
        objects: ObjectReader | None = None,
    ) -> "Facegate":
        """``objects``: where ``S3Object`` images are read from; by default the store that
        ``$FACEGATE_S3_ENDPOINT_URL`` names (``store/s3_objects.py``), else none."""
        data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(database_url or configured_database_url(data_dir), index_dir=data_dir / INDEX_DIRECTORY,
                           vector_search=configured_vector_search())
        return cls(
            data_dir, store, SecretBox.for_data_dir(data_dir), engine or load_engine(configured_face_model()),
            objects or configured_reader(),
        )

    @property
    def gate(self) -> Gate:
        return Gate(Service(self.engine, self.store, self.objects), Policies(self.store, self.data_dir / "packs"))

    def app(self) -> Starlette:
        gate = self.gate
        rejections = RejectionLog(self.store)

        def handle(caller: Caller[SigningKey], operation: str, params: dict[str, Any], context: RequestContext) -> dict[str, Any]:
            identity = caller.key.identity  # read with the key SigV4 checked, in the same query
            request = Request(identity, operation, params, caller.region, context.request_id, context.case_reference)
            return gate.handle(request)

        @asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            # Every serving process runs stored-video workers; claims are atomic, so a job
            # runs in one of them only (governance/video_worker.py).
            stop_video_workers = start_video_workers(gate.service)
            try:
                with rejections.flushing():  # repeat counts reach the audit log every window, and at shutdown
                    yield
            finally:
                stop_video_workers.set()

        console, _ = create_console(self.store, self.secrets, self.data_dir, rejections.record,
                                    Path(os.environ.get(REPORTS_DIR_VARIABLE, "reports")))
        return create_app(handle, key_lookup(self.store, self.secrets), rejections.record, lifespan,
                          [Mount("/console", console)])
