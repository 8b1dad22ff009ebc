"""Group commit: the audit records of concurrent requests share one transaction and one fsync.

A write's record commits inside the write's own transaction; every other request (a search,
a detection, a denial, a failure) only appends its record. One transaction each would make
them queue for the write lock one fsync (8-33 ms on SQLite) at a time. Instead a record
is queued, and when no batch is being committed its caller leads: it opens one transaction,
drains the whole queue into it in order (each record chained to the one before), commits,
and settles every entry. Callers that queued meanwhile wait: those whose records the batch
held return as soon as it is committed, and one of the others leads the next batch.

So a record is committed and fsynced before its caller returns (an identification's record
is durable before its results are given out), nothing waits on a timer, and a lone request
costs what it did. Other processes are serialised by the database's write lock as before
(``database._queue_behind_other_processes``). If the batch's transaction fails, no record of
it is kept and every caller in it gets the failure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from facegate.store.audit_chain import Link, seal, set_head, write
from facegate.store.transaction import Transaction


class GroupCommitFailed(RuntimeError):
    """The transaction that held this caller's record (led by another caller) failed: the
    record was not kept. The leader's own exception is the cause."""


@dataclass
class _Entry:
    """One caller's record, settled by whichever caller leads its batch."""

    fields: dict[str, Any]
    record: dict[str, Any] | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommit:
    """Audit records of one process's concurrent callers, committed a batch at a time."""

    def __init__(self, transaction: Callable[[], AbstractContextManager[Transaction]]) -> None:
        """``transaction``: the store's write transaction (``Store.transaction``)."""
        self._transaction = transaction
        self._queue: list[_Entry] = []
        self._leading = False  # a caller is committing a batch
        # Guards the queue, the flag and every entry's outcome; held for microseconds. Callers
        # wait on it for their turn to lead, or for a leader to settle their entry.
        self._turn = threading.Condition(threading.Lock())

    def append(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append a record of ``fields``; returns it as stored (with ``seq`` and hash) once
        it is committed. Raises if it could not be: the caller's request must then fail."""
        entry = _Entry(fields)
        with self._turn:
            self._queue.append(entry)
            while self._leading and not entry.done:
                self._turn.wait()
            led = not entry.done
            if led:
                self._leading = True
        if led:
            try:
                self._commit_batch(entry)
            finally:
                with self._turn:
                    self._leading = False
                    self._turn.notify_all()  # settled callers return; one of the rest leads next
        if entry.error is not None:
            if led:
                raise entry.error
            raise GroupCommitFailed("the transaction holding this audit record failed") from entry.error
        assert entry.record is not None
        return entry.record

    def _commit_batch(self, own: _Entry) -> None:
        """Commit every queued record in one transaction, and settle each entry. Records
        queued while this waits for the write lock join the batch: it drains after."""
        batch: list[_Entry] = []
        try:
            with self._transaction() as tx:
                with self._turn:
                    batch, self._queue = self._queue, []
                _append_all(tx, batch)
        except BaseException as exc:  # settled here, raised by each caller from its entry
            with self._turn:
                if not batch:  # failed before draining: the others' owners lead their own batches
                    self._queue.remove(own)
                    batch = [own]
                for entry in batch:
                    entry.error = entry.error or exc
                    entry.done = True
            return
        with self._turn:
            for entry in batch:
                entry.done = True


def _append_all(tx: Transaction, batch: list[_Entry]) -> None:
    """Chain and write ``batch`` in order, moving the head once; an entry whose fields cannot
    be made into a record (not JSON) fails alone, the others' chain skipping it."""
    last = tx.last_audit()
    previous: Link | None = None if last is None else (last.seq, last.hash)
    newest: dict[str, Any] | None = None
    for entry in batch:
        try:
            newest, text = seal(entry.fields, previous)
        except (TypeError, ValueError) as exc:
            entry.error = exc
            continue
        write(tx, newest, text)
        entry.record, previous = newest, (newest["seq"], newest["hash"])
    if newest is not None:
        set_head(tx, newest)
