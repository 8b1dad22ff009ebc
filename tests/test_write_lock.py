"""SQLite's write lock, as another process holds it: a write waits, asking again every
millisecond, then proceeds; it gives up with an error, not a hang, when the lock never comes."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from facegate.store import database
from facegate.store.database import open_store, sqlite_url


@contextmanager
def held_by_another_process(data_dir: Path, seconds: float | None) -> Iterator[None]:
    """The database's write lock taken by a connection of its own (as a CLI command would),
    released after ``seconds`` (None: only when the block ends)."""
    other = sqlite3.connect(data_dir / "facegate.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(seconds, other.execute, ("COMMIT",)) if seconds is not None else None
    if release is not None:
        release.start()
    try:
        yield
    finally:
        if release is not None:
            release.join()
        else:
            other.execute("ROLLBACK")
        other.close()


def test_a_write_waits_for_another_process_and_leaves_the_connection_as_it_found_it(tmp_path):
    """It asks again itself, many times, rather than once with SQLite's busy handler (whose
    sleeps grow to 100 ms, each a wait after the lock may already be free)."""
    store = open_store(sqlite_url(tmp_path))
    asked: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: asked.append(statement) if statement == "BEGIN IMMEDIATE" else None)
    with held_by_another_process(tmp_path, 0.3):
        started = time.monotonic()
        with store.transaction() as tx:
            tx.set_setting("waited", "yes")
        assert time.monotonic() - started >= 0.25  # it did wait for the lock
    assert len(asked) > 20
    with store.reader() as tx:
        assert tx.get_setting("waited") == "yes"
    with store.engine.connect() as connection:  # pooled: the next user gets SQLite's usual patience back
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == database.BUSY_TIMEOUT_MS
    store.close()


def test_a_write_gives_up_when_the_lock_never_comes(tmp_path, monkeypatch):
    store = open_store(sqlite_url(tmp_path))
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 200)
    with held_by_another_process(tmp_path, None):
        with pytest.raises(OperationalError, match="locked"):
            with store.transaction() as tx:
                tx.set_setting("never", "written")
    with store.reader() as tx:
        assert tx.get_setting("never") is None
    store.close()
