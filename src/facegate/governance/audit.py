"""The tamper-evident audit log: one record per request or administrative change, hash-chained.

Records are canonical JSON chained by SHA-256 (``store/audit_chain.py``). Changing a record
breaks its hash, deleting or inserting one breaks ``seq`` and the chain, swapping two breaks
the chain, and dropping the newest is caught against the head kept in the settings table.
The table's other columns are copies of record fields, so they are checked against the
record too, and every reader (``audit show``, ``audit export``) reads and filters the
hashed record, never the columns. Records never hold image bytes, embeddings or secrets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from facegate.store.audit_chain import GENESIS, HEAD_SETTING, canonical, columns, digest
from facegate.store.audit_chain import append as append  # re-exported: every recorder calls audit.append
from facegate.store.records import AuditRow
from facegate.store.transaction import Transaction

ADMINISTRATOR = "cli"
"""Who an administrative change is recorded as when the caller does not say (the CLI)."""

_MAX_PROBLEMS = 100
"""A verdict lists at most this many problems; a mass edit does not need a million lines."""


def administrative(operation: str, summary: dict[str, Any], actor: str = ADMINISTRATOR,
                   organization: str | None = None) -> dict[str, Any]:
    """The fields of a record of an administrative change (``facegate:*``), made by ``actor``
    and concerning ``organization`` (None when it concerns the whole service)."""
    return {
        "key_id": actor, "organization": organization, "purpose": "administration", "operation": operation,
        "collection": None, "decision": "allow", "policies": [], "status": 200, "error_type": None, "summary": summary,
    }


def _parsed(row: AuditRow) -> dict[str, Any] | None:
    """The hashed record of ``row`` with its stored hash; None when the text is not a JSON object."""
    try:
        record = json.loads(row.record)
    except json.JSONDecodeError:
        return None
    return {**record, "hash": row.hash} if isinstance(record, dict) else None


def _shown(row: AuditRow, record: dict[str, Any] | None) -> dict[str, Any]:
    """What a reader is given for a row: its record, or ``{"seq", "hash", "unreadable_record"}``
    for text that is not one, so nothing is dropped."""
    return record if record is not None else {"seq": row.seq, "hash": row.hash, "unreadable_record": row.record}


def stored_records(tx: Transaction) -> list[dict[str, Any]]:
    """Every record with its stored hash, oldest first (unchecked: see ``verify_log``)."""
    return [_shown(row, _parsed(row)) for row in tx.audit_rows()]


def matching(records: Iterable[dict[str, Any]], since: float | None = None, organization: str | None = None,
             operation: str | None = None) -> Iterator[dict[str, Any]]:
    """The records whose own (hashed) fields match. A record that cannot be judged (not a
    record at all, or a time that is not a number) always matches: never hidden."""
    for record in records:
        when = record.get("time")
        if "unreadable_record" in record or (
            (since is None or not isinstance(when, (int, float)) or when >= since)
            and (organization is None or record.get("organization") == organization)
            and (operation is None or record.get("operation") == operation)
        ):
            yield record


def head(tx: Transaction) -> dict[str, Any] | None:
    value = tx.get_setting(HEAD_SETTING)
    return None if value is None else json.loads(value)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    first_bad_seq: int | None
    problems: tuple[str, ...]
    head_hash: str | None

    @property
    def problem(self) -> str | None:
        return self.problems[0] if self.problems else None


Anchor = tuple[int, str]
"""(seq, hash) of a head that an earlier verification printed and someone kept apart from the
database: whoever can rewrite the whole database can rewrite the chain and its head too, but
cannot make a kept anchor fit again."""


class _Chain:
    """Walks records in order; each must be the next seq, follow the last, and match its hash."""

    def __init__(self, anchor: Anchor | None = None) -> None:
        self.count = 0
        self.previous = GENESIS
        self.anchor = anchor

    def step(self, record: Any) -> str | None:
        self.count += 1
        position = self.count
        if not isinstance(record, dict):
            return f"record {position} is not a JSON object: it was modified"
        seq = record.get("seq")
        if seq != position:
            return f"record {position} has seq {seq}: a record was deleted, inserted or moved"
        if record.get("prev_hash") != self.previous:
            return f"record {position} does not follow record {position - 1}"
        body = {k: v for k, v in record.items() if k != "hash"}
        if digest(canonical(body)) != record.get("hash"):
            return f"record {position} was modified: its hash does not match its content"
        if self.anchor is not None and self.anchor[0] == position and self.anchor[1] != record["hash"]:
            return f"record {position} has hash {record['hash']}, not the anchored {self.anchor[1]}: the log was rewritten"
        self.previous = record["hash"]
        return None

    def end(self, expected: dict[str, Any] | None) -> str | None:
        """Compare where the chain ends with the head kept apart from it."""
        last_hash = self.previous if self.count else None
        if expected is not None and (expected.get("seq") != self.count or expected.get("hash") != last_hash):
            return f"the log ends at record {self.count} but the head says {expected.get('seq')}"
        if self.anchor is not None and self.anchor[0] > self.count:
            return f"the log ends at record {self.count}, before the anchored record {self.anchor[0]}: records were removed"
        return None


def verify(records: Iterable[dict[str, Any]], expected_head: dict[str, Any] | None = None,
           anchor: Anchor | None = None) -> Verdict:
    """Check an exported chain; names the first record (by position) that does not fit."""
    chain = _Chain(anchor)
    for record in records:
        problem = chain.step(record)
        if problem is not None:
            return Verdict(False, chain.count, chain.count, (problem,), None)
    problem = chain.end(expected_head)
    if problem is not None:
        return Verdict(False, chain.count, chain.count + 1, (problem,), None)
    return Verdict(True, chain.count, None, (), chain.previous if chain.count else None)


def _column_problem(position: int, row: AuditRow, record: dict[str, Any] | None) -> str | None:
    if record is None:
        return None  # the chain already names it
    stored = {"seq": row.seq, "recorded_at": row.recorded_at, "organization": row.organization, "operation": row.operation}
    for column, value in columns(record).items():
        if stored[column] != value:
            return f"record {position}: its {column} column says {stored[column]!r} but the hashed record says {value!r}"
    return None


def _stored_head(tx: Transaction, records: int) -> tuple[dict[str, Any] | None, str | None]:
    """The head from the settings table, or the problem with it."""
    value = tx.get_setting(HEAD_SETTING)
    if value is None:
        return None, ("the audit head is missing from the settings table: the newest records may have been removed"
                      if records else None)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        return None, "the audit head in the settings table is not readable: it was modified"
    return parsed, None


Observer = Callable[[dict[str, Any], bool], None]
"""Called with every record in order (as ``stored_records`` gives it) and whether the chain
holds up to and including it."""


def verify_log(tx: Transaction, observe: Observer | None = None, anchor: Anchor | None = None) -> Verdict:
    """Check the database's log in one pass: the chain, every column of every row against
    its hashed record, the head and ``anchor``; ``observe`` sees every record on the way.

    The chain's first break is reported (every later record follows from it); column
    problems are reported for every row, since each is an edit of its own.
    """
    chain = _Chain(anchor)
    problems: list[tuple[int, str]] = []
    broken = False
    for row in tx.audit_rows():
        record = _parsed(row)
        problem = chain.step(record) if not broken else None
        if problem is not None:
            broken = True
            problems.append((chain.count, problem))
        elif broken:
            chain.count += 1
        if observe is not None:
            observe(_shown(row, record), not broken)
        column = _column_problem(chain.count, row, record)
        if column is not None:
            problems.append((chain.count, column))
    expected, head_problem = _stored_head(tx, chain.count)
    if not broken:
        head_problem = head_problem or chain.end(expected)
    if head_problem is not None:
        problems.append((chain.count + 1, head_problem))
    if problems:
        problems.sort(key=lambda p: p[0])
        listed = tuple(p for _, p in problems[:_MAX_PROBLEMS])
        if len(problems) > _MAX_PROBLEMS:
            listed += (f"... and {len(problems) - _MAX_PROBLEMS} more problems",)
        return Verdict(False, chain.count, problems[0][0], listed, None)
    return Verdict(True, chain.count, None, (), chain.previous if chain.count else None)
