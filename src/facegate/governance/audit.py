"""The tamper-evident audit log: one record per request, hash-chained.

Each record is canonical JSON (sorted keys, no spaces) holding ``seq`` and the previous
record's hash; its own hash is SHA-256 over that text. Changing a record breaks its
hash, deleting or inserting one breaks ``seq`` and the chain, swapping two breaks the
chain, and dropping the newest is caught against the head kept in the settings table.
Records never hold image bytes or embeddings.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from facegate.store.transaction import Transaction

GENESIS = "0" * 64
_HEAD = "audit_head"


def canonical(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def append(tx: Transaction, fields: dict[str, Any]) -> dict[str, Any]:
    """Append one record inside ``tx`` (which the store serialises); returns it with its hash."""
    last = tx.last_audit()
    seq = 1 if last is None else last.seq + 1
    record = {**fields, "seq": seq, "prev_hash": GENESIS if last is None else last.hash}
    record.setdefault("time", time.time())
    text = canonical(record)
    record_hash = digest(text)
    tx.append_audit(seq, record["time"], record.get("organization"), record.get("operation", ""), text, record_hash)
    tx.set_setting(_HEAD, json.dumps({"seq": seq, "hash": record_hash}))
    return {**record, "hash": record_hash}


def stored_records(tx: Transaction, **filters: Any) -> list[dict[str, Any]]:
    """Records with their stored hashes, oldest first (``since``, ``organization``, ``operation``)."""
    return [{**json.loads(row.record), "hash": row.hash} for row in tx.audit_rows(**filters)]


def head(tx: Transaction) -> dict[str, Any] | None:
    value = tx.get_setting(_HEAD)
    return None if value is None else json.loads(value)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    first_bad_seq: int | None
    problem: str | None
    head_hash: str | None


def verify(records: Iterable[dict[str, Any]], expected_head: dict[str, Any] | None = None) -> Verdict:
    """Check the chain; names the first record (by position's seq) that does not fit."""
    previous, count = GENESIS, 0
    for position, record in enumerate(records, start=1):
        count = position
        body = {k: v for k, v in record.items() if k != "hash"}
        seq = record.get("seq")
        if seq != position:
            return Verdict(False, count, position, f"record {position} has seq {seq}: a record was deleted, inserted or moved", None)
        if record.get("prev_hash") != previous:
            return Verdict(False, count, position, f"record {position} does not follow record {position - 1}", None)
        if digest(canonical(body)) != record.get("hash"):
            return Verdict(False, count, position, f"record {position} was modified: its hash does not match its content", None)
        previous = record["hash"]
    if expected_head is not None and (expected_head["seq"] != count or expected_head["hash"] != (previous if count else None)):
        return Verdict(False, count, count + 1, f"the log ends at record {count} but the head says {expected_head['seq']}", None)
    return Verdict(True, count, None, None, previous if count else None)
