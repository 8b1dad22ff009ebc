"""The composition root: data directory -> store, engine, service, keys -> ASGI app.

This is the only module that knows every layer. Requests flow api -> handler ->
service; the handler is where governance will wrap the service, so no path skips it.
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
from facegate.governance.keys import owner_lookup, secret_lookup
from facegate.service.context import Scope, Service
from facegate.service.operations import run
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.secrets import SecretBox


def default_data_dir() -> Path:
    return Path(os.environ.get("FACEGATE_DATA_DIR", "./data"))


@dataclass
class Facegate:
    """Everything a running instance holds."""

    data_dir: Path
    store: Store
    secrets: SecretBox
    engine: FaceEngine

    @classmethod
    def open(cls, data_dir: Path, engine: FaceEngine | None = None) -> "Facegate":
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(data_dir, open_store(sqlite_url(data_dir)), SecretBox.for_data_dir(data_dir), engine or load_engine())

    def app(self) -> Starlette:
        service = Service(self.engine, self.store)
        owner_of = owner_lookup(self.store)

        def handle(caller: Caller, operation: str, params: dict[str, Any], context: RequestContext) -> dict[str, Any]:
            return run(service, Scope(owner=owner_of(caller.access_key_id), region=caller.region), operation, params)

        return create_app(handle, secret_lookup(self.store, self.secrets))
