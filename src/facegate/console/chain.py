"""The chain's state for the overview: the last full ``audit verify`` and the head now.

Verifying a million records takes tens of seconds of CPU, far too long for a page, so the
console runs ``facegate audit verify --json`` itself, in a child process (its own core, not
the server's threads and their interpreter lock), at most one at a time, whenever the
overview is shown and the last result is older than ``max_age_seconds``. The page shows that
result, when it was reached, and how far the log has grown since.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from facegate.governance.audit import Verdict
from facegate.store.audit_chain import HEAD_SETTING
from facegate.store.database import Store

log = logging.getLogger("facegate.console")

MAX_AGE_SECONDS = 3600.0
"""A million records take about a minute of one core to verify: hourly, unless asked."""
_VERIFY = "from facegate.cli.main import main; main()"


@dataclass(frozen=True)
class ChainState:
    verdict: Verdict | None
    """The last verification's result; None before the first has finished."""
    checked_at: float | None
    running: bool
    head_seq: int | None
    head_hash: str | None
    """The head in the settings table now (it may be newer than the verdict's)."""


class ChainWatch:
    def __init__(self, store: Store, data_dir: Path, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self.store = store
        self.data_dir = data_dir
        self.max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._checked_at: float | None = None
        self._thread: threading.Thread | None = None

    def state(self, refresh: bool = True) -> ChainState:
        """What is known now; starts a verification when the last is missing or old."""
        with self.store.reader() as tx:
            value = tx.get_setting(HEAD_SETTING)
        head = _head(value)
        with self._lock:
            stale = self._checked_at is None or time.time() - self._checked_at > self.max_age_seconds
            if refresh and stale:
                self._start()
            running = self._thread is not None and self._thread.is_alive()
            return ChainState(self._verdict, self._checked_at, running, *head)

    def verify_now(self) -> None:
        with self._lock:
            self._start()

    def wait(self, timeout: float | None = None) -> None:
        """Until the running verification (if any) has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._verify, name="facegate-console-verify", daemon=True)
        self._thread.start()

    def _verify(self) -> None:
        url = self.store.engine.url.render_as_string(hide_password=False)
        command = [sys.executable, "-c", _VERIFY, "audit", "verify", "--json", "--data-dir", str(self.data_dir)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FACEGATE_DATABASE_URL": url})
            result = json.loads(done.stdout)
            verdict = Verdict(result["ok"], result["records"], result["first_bad_seq"], tuple(result["problems"]), result["head_hash"])
        except Exception:  # the page says it could not verify; the log says why
            log.exception("the console's audit verification failed")
            verdict = Verdict(False, 0, None, ("the verification itself failed: see the server log",), None)
        with self._lock:
            self._verdict, self._checked_at = verdict, time.time()


def _head(value: str | None) -> tuple[int | None, str | None]:
    try:
        parsed = json.loads(value) if value is not None else None
    except json.JSONDecodeError:
        return None, None
    if not isinstance(parsed, dict):
        return None, None
    return parsed.get("seq"), parsed.get("hash")
