"""Shared fixtures: the real face photos live outside the repo (FACEGATE_TEST_FACES)."""

from __future__ import annotations

import os
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
