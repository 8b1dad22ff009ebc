"""Shared fixtures: the real face photos live outside the repo (FACEGATE_TEST_FACES)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

_DEFAULT_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"


def faces_root() -> Path:
    """Where the third-party test photos live; they are never committed to this repo."""
    return Path(os.environ.get("FACEGATE_TEST_FACES", _DEFAULT_FACES)).resolve()


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    root = faces_root()
    if not (root / "MANIFEST.tsv").is_file():
        pytest.skip(f"test face photos not found at {root}; set FACEGATE_TEST_FACES to the shared/faces folder")
    return root


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server for this test session (see tests/support/postgres.py)."""
    from tests.support.postgres import postgres_server, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres_server() as url:
        yield url
