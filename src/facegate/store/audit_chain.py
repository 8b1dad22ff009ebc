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


def append(tx: Transaction, fields: dict[str, Any]) -> dict[str, Any]:
    """Append one record inside ``tx`` (which the store serialises); returns it with its hash."""
    last = tx.last_audit()
    seq = 1 if last is None else last.seq + 1
    record = {**fields, "seq": seq, "prev_hash": GENESIS if last is None else last.hash}
    record.setdefault("time", time.time())
    text = canonical(record)
    record_hash = digest(text)
    tx.append_audit(record=text, digest=record_hash, **columns(record))
    tx.set_setting(HEAD_SETTING, json.dumps({"seq": seq, "hash": record_hash}))
    return {**record, "hash": record_hash}
