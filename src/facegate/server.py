"""The composition root: data directory -> store, engine, service, keys -> ASGI app.

This is the only module that knows every layer. Requests flow api -> gate -> service:
the handler given to the API resolves the caller's identity and hands every request to
the governance gate, so no path reaches the service without a policy decision and an
audit record.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette

from facegate.api.app import RequestContext, create_app
from facegate.api.sigv4 import Caller
from facegate.engine.pipeline import FaceEngine, load_engine
from facegate.governance.gate import Gate, Request
from facegate.governance.identity import resolve
from facegate.governance.keys import secret_lookup
from facegate.governance.policy import Policies
from facegate.service.context import Service
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.secrets import SecretBox


DATA_DIR_VARIABLE = "FACEGATE_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_VARIABLE, "./data"))


DATABASE_URL_VARIABLE = "FACEGATE_DATABASE_URL"


def configured_database_url(data_dir: Path) -> str:
    """``$FACEGATE_DATABASE_URL`` (e.g. ``postgresql+psycopg://user@host/db``), else the
    embedded SQLite file in the data directory. The master key and custom policy packs stay
    in the data directory either way."""
    return os.environ.get(DATABASE_URL_VARIABLE) or sqlite_url(data_dir)


@dataclass
class Facegate:
    """Everything a running instance holds."""

    data_dir: Path
    store: Store
    secrets: SecretBox
    engine: FaceEngine

    @classmethod
    def open(cls, data_dir: Path, engine: FaceEngine | None = None, database_url: str | None = None) -> "Facegate":
        data_dir.mkdir(parents=True, exist_ok=True)
        store = open_store(database_url or configured_database_url(data_dir))
        return cls(data_dir, store, SecretBox.for_data_dir(data_dir), engine or load_engine())

    @property
    def gate(self) -> Gate:
        return Gate(Service(self.engine, self.store), Policies(self.store, self.data_dir / "packs"))

    def app(self) -> Starlette:
        gate = self.gate

        def handle(caller: Caller, operation: str, params: dict[str, Any], context: RequestContext) -> dict[str, Any]:
            identity = resolve(self.store, caller.access_key_id)
            request = Request(identity, operation, params, caller.region, context.request_id, context.case_reference)
            return gate.handle(request)

        return create_app(handle, secret_lookup(self.store, self.secrets))


def app_from_environment() -> Starlette:
    """The app of one ``facegate serve --workers N`` process, configured by the environment
    its parent set (``FACEGATE_DATA_DIR``, ``FACEGATE_DATABASE_URL``)."""
    return Facegate.open(default_data_dir()).app()
