"""The rejection log: requests refused before the governance gate leave a record too.

Bad signatures, unknown or revoked keys, malformed bodies, unknown operations and paths,
and crashes outside the gate never reach the gate's audit record, yet that is where brute
force shows. So they are appended to the same hash-chained audit log, never with a body,
and aggregated so that a flood cannot fill the disk. Identical rejections share a key:
(claimed key id, source address, claimed operation, error type).

- The first rejection of a key in a window (60 s) is on disk before its response is sent.
- Repeats within the window are only counted in memory, and written as one record with
  ``count`` N when the window closes (a flusher thread looks every few seconds) or when
  the server shuts down. After ``kill -9`` at most the last window's repeat counts are
  lost, never a first occurrence.
- A record of repeats carries the request id of the first repeat (so request ids stay
  unique in the log) and the ``window_start`` of the occurrence that opened the window.
- Memory is bounded: past ``MAX_KEYS_PER_SOURCE`` open keys from one address, or
  ``MAX_KEYS`` in all, rejections fold into one key per address and error type (key id
  and operation dropped, ``"folded": true``), and past ``MAX_FOLDED_KEYS`` of those into
  one per error type for all addresses.

Each process keeps its own windows (``serve --workers N`` may write N records per window).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from facegate.governance import audit
from facegate.store.database import Store
from facegate.store.transaction import Transaction

log = logging.getLogger("facegate.governance.rejections")

WINDOW_SECONDS = 60.0
FLUSH_EVERY_SECONDS = 5.0
MAX_KEYS = 10_000
MAX_KEYS_PER_SOURCE = 100
MAX_FOLDED_KEYS = 1_000


@dataclass(frozen=True)
class Rejection:
    """One refused request, as claimed by the client: nothing in it has been verified.

    ``key_id`` is the access key id the Authorization header names (at most 128
    characters), ``operation`` what X-Amz-Target names (at most 64), ``source`` the
    client's address; any of them may be None. ``status`` is the HTTP status sent.
    """

    request_id: str
    source: str | None
    key_id: str | None
    operation: str | None
    error_type: str
    status: int


_Key = tuple[str | None, str | None, str | None, str, bool]
"""(key id, source, operation, error type, folded)."""


@dataclass
class _Window:
    """One key's open window: what it has counted that is not yet on disk."""

    start: float
    status: int
    first_written: threading.Event = field(default_factory=threading.Event)
    pending: int = 0
    pending_request_id: str | None = None

    def count(self, request_id: str) -> None:
        self.pending += 1
        self.pending_request_id = self.pending_request_id or request_id


class RejectionLog:
    """Aggregates rejections into audit records; ``record`` is safe from any thread."""

    def __init__(self, store: Store, window_seconds: float = WINDOW_SECONDS, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.window_seconds = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._open: dict[_Key, _Window] = {}
        self._keys_per_source: Counter[str | None] = Counter()
        self._folded = 0

    def record(self, rejection: Rejection) -> None:
        """Count ``rejection``; if it opens a window, append its record before returning."""
        now = self.clock()
        with self._lock:
            key = self._key_for(rejection)
            window, closed = self._open.get(key), None
            if window is not None and self._expired(window, now):
                window, closed = None, window
                self._forget(key)
            opened = window is None
            if window is None:
                window = self._open[key] = _Window(now, rejection.status)
                self._keys_per_source[key[1]] += 1
                self._folded += 1 if key[4] else 0
            else:
                window.count(rejection.request_id)
        if closed is not None:
            self._write([(key, closed)])
        if not opened:
            window.first_written.wait()  # a repeat is answered only once its key's first record is on disk
            return
        try:
            with self.store.transaction() as tx:
                audit.append(tx, _fields(tx, key, window, rejection.request_id, 1, now))
        except Exception:
            with self._lock:
                window.count(rejection.request_id)  # written when the window closes, if the store is back
            raise
        finally:
            window.first_written.set()

    def close_expired(self) -> None:
        """Write the repeat counts of every window older than ``window_seconds``."""
        now = self.clock()
        with self._lock:
            expired = [(key, w) for key, w in self._open.items() if self._expired(w, now)]
            for key, _ in expired:
                self._forget(key)
        self._write(expired)

    def close_all(self) -> None:
        """Write every open window's repeat count (at shutdown)."""
        with self._lock:
            closing = list(self._open.items())
            for key, _ in closing:
                self._forget(key)
        self._write(closing)

    @contextmanager
    def flushing(self, every_seconds: float = FLUSH_EVERY_SECONDS) -> Iterator[None]:
        """Close expired windows in a background thread while the server runs, and all of
        them when it stops."""
        stop = threading.Event()

        def flush() -> None:
            while not stop.wait(every_seconds):
                try:
                    self.close_expired()
                except Exception:  # the store may be back at the next round; those counts are lost
                    log.exception("could not write the rejection log's closed windows")

        thread = threading.Thread(target=flush, name="facegate-rejection-log", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.close_all()

    def _key_for(self, rejection: Rejection) -> _Key:
        exact: _Key = (rejection.key_id, rejection.source, rejection.operation, rejection.error_type, False)
        if exact in self._open or (
            len(self._open) < MAX_KEYS and self._keys_per_source[rejection.source] < MAX_KEYS_PER_SOURCE
        ):
            return exact
        by_source: _Key = (None, rejection.source, None, rejection.error_type, True)
        if by_source in self._open or self._folded < MAX_FOLDED_KEYS:
            return by_source
        return (None, None, None, rejection.error_type, True)

    def _expired(self, window: _Window, now: float) -> bool:
        return now - window.start >= self.window_seconds

    def _forget(self, key: _Key) -> None:
        del self._open[key]
        self._keys_per_source[key[1]] -= 1
        if not self._keys_per_source[key[1]]:
            del self._keys_per_source[key[1]]
        self._folded -= 1 if key[4] else 0

    def _write(self, closing: list[tuple[_Key, _Window]]) -> None:
        pending = [(key, w) for key, w in closing if w.pending]
        if not pending:
            return
        now = self.clock()
        with self.store.transaction() as tx:
            for key, window in pending:
                audit.append(tx, _fields(tx, key, window, window.pending_request_id or "", window.pending, now))


def _fields(tx: Transaction, key: _Key, window: _Window, request_id: str, count: int, now: float) -> dict[str, Any]:
    """One record standing for ``count`` rejections; ``request_id`` is the first of them."""
    key_id, source, operation, error_type, folded = key
    owner = tx.access_key_secret(key_id) if key_id else None  # a claimed key that exists, revoked or not
    fields: dict[str, Any] = {
        "time": now,
        "window_start": window.start,
        "request_id": request_id,
        "count": count,
        "source": source,
        "key_id": key_id,
        "organization": None if owner is None else owner[0].owner,
        "operation": operation,
        "error_type": error_type,
        "status": window.status,
        "decision": None,
    }
    if folded:
        fields["folded"] = True
    return fields
