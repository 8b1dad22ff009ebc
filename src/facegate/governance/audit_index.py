"""The audit index: the console's cache of the hashed audit log, for filters, counts and the
review queue over millions of records.

It is filled from ``audit_log`` in ``seq`` order, in batches, each in its own short write
transaction (``refresh``), and can be dropped and rebuilt from the log at any time. It never
stands for the log: every record a page shows is read from ``audit_log`` and checked against
its hash there (``checked``), and a record whose index entry no longer fits it is shown
flagged, never hidden. Which identifications need review follows from the chain alone
(``review_rules.py``): the index walks the log in order, so it knows the review purposes in
force at every record.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from facegate.governance.review_rules import (
    DEFAULT_REVIEW_PURPOSES,
    IDENTIFICATIONS,
    PENDING,
    REVIEW_DECISION_OPERATION,
    REVIEW_PURPOSES_OPERATION,
    needs_review,
    overall,
    purposes_of,
)
from facegate.store import audit_facets
from facegate.store.audit_chain import digest
from facegate.store.audit_facets import Facet, FacetFilter
from facegate.store.database import Store
from facegate.store.records import AuditRow
from facegate.store.transaction import Transaction

BATCH = 2_000
"""Records indexed per write transaction: about a quarter of a second of work on 2 cores, so
requests never queue for long behind the first index of a large log (about 2 minutes for a
million records, once, after upgrading)."""
_DAY = 86_400


def parsed(row: AuditRow) -> dict[str, Any] | None:
    """The hashed record of a stored row with its hash, or None when the text is not a record."""
    try:
        record = json.loads(row.record)
    except json.JSONDecodeError:
        return None
    return {**record, "hash": row.hash} if isinstance(record, dict) else None


@dataclass(frozen=True)
class Checked:
    """A record as a page shows it: read from ``audit_log``, with what is wrong with it."""

    seq: int
    record: dict[str, Any]
    facet: Facet | None
    intact: bool
    """Its text still hashes to its stored hash (the chain itself is ``audit verify``'s)."""
    indexed_as_is: bool
    """The index entry was made from this very record (same hash): filters saw what is shown."""


def refresh(store: Store) -> int:
    """Index every record up to the log's head; returns the newest indexed seq."""
    while True:
        with store.reader() as tx:
            last = tx.last_audit()
            through = audit_facets.indexed_through(tx)
        if last is None or through >= last.seq:
            return through
        with store.transaction() as tx:
            index_next(tx, BATCH)


def index_next(tx: Transaction, limit: int) -> int:
    """Index up to ``limit`` records after the newest indexed one, inside ``tx``; returns how many."""
    through = audit_facets.indexed_through(tx)
    rows = audit_facets.rows_after(tx, through, limit)
    purposes = purposes_in_force(tx)
    facets: list[Facet] = []
    daily: Counter[tuple[int, str, str, str]] = Counter()
    decisions: list[tuple[int, dict[str, Any]]] = []
    for row in rows:
        record = parsed(row) or {}
        changed = purposes_of(record)
        purposes = purposes if changed is None else changed
        facets.append(_facet(row, record, purposes))
        _count(daily, record)
        if record.get("operation") == REVIEW_DECISION_OPERATION and record.get("status") == 200:
            decisions.append((row.seq, record))
    audit_facets.insert_facets(tx, facets)
    audit_facets.add_daily(tx, dict(daily))
    for seq, record in decisions:
        _apply_decision(tx, seq, record)
    return len(rows)


def purposes_in_force(tx: Transaction) -> frozenset[str]:
    latest = audit_facets.latest(tx, REVIEW_PURPOSES_OPERATION)
    if latest is not None:
        row = audit_facets.rows_at(tx, [latest.seq]).get(latest.seq)
        found = purposes_of(parsed(row) or {}) if row is not None else None
        if found is not None:
            return found
    return frozenset(DEFAULT_REVIEW_PURPOSES)


def _text(value: Any, size: int) -> str | None:
    return None if value is None else str(value)[:size]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _facet(row: AuditRow, record: dict[str, Any], purposes: frozenset[str]) -> Facet:
    summary = record.get("summary") if isinstance(record.get("summary"), dict) else {}
    count, matches, status = record.get("count", 1), summary.get("matches"), record.get("status")
    review_of = summary.get("identification_seq") if record.get("operation") == REVIEW_DECISION_OPERATION else None
    return Facet(
        seq=row.seq, hash=row.hash, time=_number(record.get("time")),
        key_id=_text(record.get("key_id"), 128), organization=_text(record.get("organization"), 255),
        purpose=_text(record.get("purpose"), 64), operation=_text(record.get("operation"), 64),
        decision=_text(record.get("decision"), 16), status=status if isinstance(status, int) else None,
        case_reference=_text(record.get("case_reference"), 128), collection=_text(record.get("collection"), 2048),
        requests=count if isinstance(count, int) and count > 0 else 1,
        matches=matches if isinstance(matches, int) else None, top_similarity=_number(summary.get("top_similarity")),
        review=PENDING if needs_review(record, purposes) else None, reviewed_by=None,
        review_of=review_of if isinstance(review_of, int) else None,
    )


def _count(daily: Counter[tuple[int, str, str, str]], record: dict[str, Any]) -> None:
    """API requests (not administrative records, not refused console requests),
    identifications answered and denials, per day."""
    operation, when = record.get("operation"), _number(record.get("time"))
    if when is None or (isinstance(operation, str) and operation.startswith(("facegate:", "console:"))):
        return
    count = record.get("count", 1)
    n = count if isinstance(count, int) and count > 0 else 1
    key = (int(when // _DAY), _text(record.get("organization"), 255) or "", _text(record.get("purpose"), 64) or "")
    daily[(*key, "request")] += n
    if record.get("decision") == "deny":
        daily[(*key, "denial")] += n
    elif operation in IDENTIFICATIONS and record.get("decision") == "allow" and record.get("status") == 200:
        daily[(*key, "identification")] += n


def _apply_decision(tx: Transaction, seq: int, record: dict[str, Any]) -> None:
    summary = record["summary"] if isinstance(record.get("summary"), dict) else {}
    target, candidates = summary.get("identification_seq"), summary.get("candidates")
    if not isinstance(target, int) or not isinstance(candidates, list):
        return
    outcomes = [c.get("outcome") for c in candidates if isinstance(c, dict)]
    if not audit_facets.mark_reviewed(tx, target, overall([o for o in outcomes if isinstance(o, str)]), seq):
        return  # not a pending identification (a second decision is refused before it is recorded)
    identification = audit_facets.facet(tx, target)
    audit_facets.insert_candidates(tx, [
        {"decision_seq": seq, "position": i, "organization": identification.organization if identification else None,
         "purpose": identification.purpose if identification else None,
         "similarity": _number(c.get("similarity")), "outcome": str(c.get("outcome"))[:16]}
        for i, c in enumerate(candidates) if isinstance(c, dict)
    ])


def checked(tx: Transaction, seqs: list[int], where: FacetFilter | None = None) -> list[Checked]:
    """The records at ``seqs`` read from ``audit_log``, each checked against its hash and its
    index entry, in the order given. A seq whose row is gone is skipped (``audit verify``
    names the gap)."""
    rows = audit_facets.rows_at(tx, seqs)
    facets = audit_facets.facets_at(tx, seqs)
    out = []
    for seq in seqs:
        row = rows.get(seq)
        if row is None:
            continue
        record = parsed(row)
        intact = record is not None and digest(row.record) == row.hash
        facet = facets.get(seq)
        as_is = facet is not None and facet.hash == row.hash and record is not None and _agrees(record, where)
        out.append(Checked(seq, record or {"seq": seq, "hash": row.hash, "unreadable_record": row.record}, facet, intact, as_is))
    return out


def _agrees(record: dict[str, Any], where: FacetFilter | None) -> bool:
    """Whether the hashed record itself matches the filter its index entry matched."""
    if where is None:
        return True
    when = _number(record.get("time"))
    if where.since is not None and (when is None or when < where.since):
        return False
    if where.until is not None and (when is None or when >= where.until):
        return False
    for name in ("organization", "key_id", "purpose", "operation", "case_reference", "collection"):
        value = getattr(where, name)
        if value is not None and record.get(name) != value:
            return False
    if where.decision is not None:
        return record.get("decision") == (None if where.decision == audit_facets.NO_DECISION else where.decision)
    return True
