"""The console on a real store, without the face engine: for tests of its server-side rules.

``identification`` appends a record shaped exactly as the gate writes one for an answered
search (``governance/gate.py``), so review and filter tests need no photos; the browser
tests make real identifications through boto3 instead.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from facegate.console.app import create_console
from facegate.console.context import Console
from facegate.governance import audit
from facegate.governance.console_accounts import add_account
from facegate.governance.rejections import RejectionLog
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.secrets import SecretBox

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class ConsoleUnderTest:
    store: Store
    console: Console
    app: Starlette
    data_dir: Path

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver", follow_redirects=False)

    def account(self, name: str, role: str) -> str:
        add_account(self.store, name, role, PASSWORD)
        return name

    def logged_in(self, name: str, role: str | None = None) -> TestClient:
        if role is not None:
            self.account(name, role)
        client = self.client()
        response = log_in(client, name, PASSWORD)
        assert response.status_code == 303, response.text
        return client


CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
"""Real argon2id at a test's cost: the production parameters take about 0.3 s a hash here,
which is their point in production and minutes across these suites (monkeypatch it in)."""


@contextmanager
def console_under_test(tmp_path: Path, database_url: str | None = None) -> Iterator[ConsoleUnderTest]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(database_url or sqlite_url(data_dir))
    try:
        app, console = create_console(store, SecretBox.for_data_dir(data_dir), data_dir, RejectionLog(store).record,
                                      tmp_path / "reports")
        yield ConsoleUnderTest(store, console, Starlette(routes=[Mount("/console", app)]), data_dir)
    finally:
        store.close()


def csrf_token(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def log_in(client: TestClient, name: str, password: str):  # type: ignore[no-untyped-def]
    page = client.get("/console/login")
    return client.post("/console/login", data={"csrf_token": csrf_token(page.text), "account": name, "password": password,
                                               "next": "/console/"})


def post(client: TestClient, path: str, fields: dict[str, str], page: str = "/console/"):  # type: ignore[no-untyped-def]
    """POST a console form with the CSRF token of the session (read from ``page``)."""
    token = csrf_token(client.get(page).text)
    return client.post(path, data={"csrf_token": token, **fields})


def records(store: Store) -> list[dict[str, Any]]:
    with store.reader() as tx:
        return audit.stored_records(tx)


def identification(
    store: Store, purpose: str = "criminal_investigation", organization: str = "metro", case_reference: str | None = "CASE-1",
    similarities: tuple[float, ...] = (99.5, 99.1), operation: str = "SearchFacesByImage", when: float | None = None,
) -> dict[str, Any]:
    """An answered search's audit record, as the gate writes it."""
    matches = [{"FaceId": str(uuid.uuid4()), "ExternalImageId": f"person-{i}", "Similarity": s} for i, s in enumerate(similarities)]
    summary: dict[str, Any] = {"matches": len(matches), "top_similarity": max(similarities, default=None),
                               "candidates": matches}
    if matches:
        summary["face_ids"] = [m["FaceId"] for m in matches]
        summary["external_image_ids"] = [m["ExternalImageId"] for m in matches]
    fields = {
        "time": time.time() if when is None else when, "request_id": str(uuid.uuid4()), "key_id": "AKIATESTKEY000000001",
        "organization": organization, "sector": "law_enforcement", "purpose": purpose, "operation": operation,
        "collection": "suspects", "case_reference": case_reference, "threshold": 99.0, "decision": "allow",
        "policies": ["baseline/allow-own-collections"], "status": 200, "error_type": None, "summary": summary,
    }
    with store.transaction() as tx:
        return audit.append(tx, fields)
