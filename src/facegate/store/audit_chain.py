"""How an audit record is stored so that editing it shows: canonical JSON, chained by SHA-256.

Each record is canonical JSON (sorted keys, no spaces) holding ``seq`` and the previous
record's hash; its own hash is SHA-256 over that text, and the newest ``seq`` and hash are
kept as the head in the settings table. The ``audit_log`` table's other columns (``seq``,
``recorded_at``, ``organization``, ``operation``) are copies of fields of the hashed record,
for indexing and for people querying the database: ``columns`` is the one place that
derives them, so ``facegate audit verify`` can check each against its record. This lives
in the store because migrations append records too; what is recorded, and what a record
means, is governance's (``governance/audit.py``).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from facegate.store.transaction import Transaction

GENESIS = "0" * 64
HEAD_SETTING = "audit_head"


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def columns(record: dict[str, Any]) -> dict[str, Any]:
    """The ``audit_log`` columns beside the record, each a copy of one of its fields."""
    return {
        "seq": record.get("seq"),
        "recorded_at": record.get("time"),
        "organization": record.get("organization"),
        "operation": record.get("operation") or "",
    }


Link = tuple[int, str]
"""(seq, hash) of the record the next one follows."""


def seal(fields: dict[str, Any], previous: Link | None) -> tuple[dict[str, Any], str]:
    """``fields`` as the record that follows ``previous`` (None: the first record): with
    ``seq``, ``prev_hash`` and ``time`` (now, unless given), and its hash; and the canonical
    text that is stored and hashed. Nothing is written. Raises ``TypeError``/``ValueError``
    for fields that are not JSON."""
    seq = 1 if previous is None else previous[0] + 1
    record = {**fields, "seq": seq, "prev_hash": GENESIS if previous is None else previous[1]}
    record.setdefault("time", time.time())
    text = canonical(record)
    return {**record, "hash": digest(text)}, text


def write(tx: Transaction, record: dict[str, Any], text: str) -> None:
    """Store a sealed record inside ``tx``, which must be serialised with every other
    appender (the store's write transaction) or the chain forks; then ``set_head``."""
    tx.append_audit(record=text, digest=record["hash"], **columns(record))


def set_head(tx: Transaction, record: dict[str, Any]) -> None:
    """Keep ``record`` (the newest written) as the head, apart from the chain."""
    tx.set_setting(HEAD_SETTING, json.dumps({"seq": record["seq"], "hash": record["hash"]}))


def append(tx: Transaction, fields: dict[str, Any]) -> dict[str, Any]:
    """Append one record inside ``tx`` (which the store serialises); returns it with its hash."""
    last = tx.last_audit()
    record, text = seal(fields, None if last is None else (last.seq, last.hash))
    write(tx, record, text)
    set_head(tx, record)
    return record
