"""Queries of the audit index: ``audit_facets``, ``audit_daily`` and ``review_candidates``.

The index is a cache of fields of the hashed audit records (``governance/audit_index.py``
fills it from ``audit_log`` in order, and says what each field means), so that a console
page can filter, page and count a log of millions of records through indexes. Nothing here
is the truth: a reader fetches the rows it shows from ``audit_log`` (``rows_at``) and checks
them there. Pages run newest first by ``seq`` (keyset pagination: no OFFSET).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, select, update

from facegate.store import schema
from facegate.store.records import AuditRow
from facegate.store.transaction import Transaction

NO_DECISION = "none"
"""The ``decision`` filter value for records refused before a policy decision (rejections)."""


@dataclass(frozen=True)
class Facet:
    """One record's indexed fields (see ``schema.audit_facets``)."""

    seq: int
    hash: str
    time: float | None
    key_id: str | None
    organization: str | None
    purpose: str | None
    operation: str | None
    decision: str | None
    status: int | None
    case_reference: str | None
    collection: str | None
    requests: int
    matches: int | None
    top_similarity: float | None
    review: str | None
    reviewed_by: int | None
    review_of: int | None


_FACET_COLUMNS = [f.name for f in fields(Facet)]


def _facet(row: Any) -> Facet:
    return Facet(**{name: getattr(row, name) for name in _FACET_COLUMNS})


@dataclass(frozen=True)
class FacetFilter:
    """What the console's audit page filters on; None is "any". Times are epoch seconds,
    ``since`` inclusive and ``until`` exclusive; ``decision`` is allow, deny or ``NO_DECISION``."""

    since: float | None = None
    until: float | None = None
    organization: str | None = None
    key_id: str | None = None
    purpose: str | None = None
    operation: str | None = None
    decision: str | None = None
    case_reference: str | None = None
    collection: str | None = None
    review: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        f = schema.audit_facets.c
        out: list[ColumnElement[bool]] = []
        if self.since is not None:
            out.append(f.time >= self.since)
        if self.until is not None:
            out.append(f.time < self.until)
        for name in ("organization", "key_id", "purpose", "operation", "case_reference", "collection", "review"):
            value = getattr(self, name)
            if value is not None:
                out.append(f[name] == value)
        if self.decision is not None:
            out.append(f.decision.is_(None) if self.decision == NO_DECISION else f.decision == self.decision)
        return out


def _audit_row(row: Any) -> AuditRow:
    return AuditRow(row.seq, row.record, row.hash, row.recorded_at, row.organization, row.operation)


def indexed_through(tx: Transaction) -> int:
    """The newest seq in the index (0 when empty)."""
    return tx.connection.execute(select(func.coalesce(func.max(schema.audit_facets.c.seq), 0))).scalar_one()


def rows_after(tx: Transaction, seq: int, limit: int) -> list[AuditRow]:
    """Up to ``limit`` stored audit rows after ``seq``, in order."""
    a = schema.audit_log.c
    rows = tx.connection.execute(select(schema.audit_log).where(a.seq > seq).order_by(a.seq).limit(limit))
    return [_audit_row(r) for r in rows]


def rows_at(tx: Transaction, seqs: Iterable[int]) -> dict[int, AuditRow]:
    """The stored audit rows with these seqs (those that exist)."""
    wanted = list(seqs)
    if not wanted:
        return {}
    a = schema.audit_log.c
    return {r.seq: _audit_row(r) for r in tx.connection.execute(select(schema.audit_log).where(a.seq.in_(wanted)))}


def insert_facets(tx: Transaction, facets: Sequence[Facet]) -> None:
    if facets:
        tx.connection.execute(insert(schema.audit_facets), [{n: getattr(f, n) for n in _FACET_COLUMNS} for f in facets])


def add_daily(tx: Transaction, counts: dict[tuple[int, str, str, str], int]) -> None:
    """Add ``counts`` keyed (day, organization, purpose, kind) to the daily totals: the days
    touched are read, merged and rewritten in two statements, however many keys they hold."""
    if not counts:
        return
    d = schema.audit_daily.c
    days = sorted({key[0] for key in counts})
    merged = dict(counts)
    for row in tx.connection.execute(select(d.day, d.organization, d.purpose, d.kind, d.requests).where(d.day.in_(days))):
        key = (row.day, row.organization, row.purpose, row.kind)
        merged[key] = merged.get(key, 0) + row.requests
    tx.connection.execute(delete(schema.audit_daily).where(d.day.in_(days)))
    tx.connection.execute(insert(schema.audit_daily), [
        {"day": day, "organization": organization, "purpose": purpose, "kind": kind, "requests": n}
        for (day, organization, purpose, kind), n in merged.items()
    ])


def mark_reviewed(tx: Transaction, identification_seq: int, outcome: str, decision_seq: int) -> bool:
    """Record a decision on a pending identification; False when it is not pending."""
    f = schema.audit_facets.c
    done = tx.connection.execute(
        update(schema.audit_facets).where(and_(f.seq == identification_seq, f.review == "pending"))
        .values(review=outcome, reviewed_by=decision_seq)
    )
    return done.rowcount > 0


def insert_candidates(tx: Transaction, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        tx.connection.execute(insert(schema.review_candidates), list(rows))


def facet(tx: Transaction, seq: int) -> Facet | None:
    row = tx.connection.execute(select(schema.audit_facets).where(schema.audit_facets.c.seq == seq)).first()
    return None if row is None else _facet(row)


def facets_at(tx: Transaction, seqs: Iterable[int]) -> dict[int, Facet]:
    wanted = list(seqs)
    if not wanted:
        return {}
    f = schema.audit_facets.c
    return {r.seq: _facet(r) for r in tx.connection.execute(select(schema.audit_facets).where(f.seq.in_(wanted)))}


def page(tx: Transaction, where: FacetFilter, limit: int, before: int | None = None, after: int | None = None) -> list[Facet]:
    """Up to ``limit`` matching facets, newest first: those older than ``before``, or (for the
    way back) the ``limit`` oldest newer than ``after``, still returned newest first."""
    f = schema.audit_facets.c
    conditions = where.conditions()
    if before is not None:
        conditions.append(f.seq < before)
    if after is not None:
        conditions.append(f.seq > after)
    order = f.seq.asc() if after is not None and before is None else f.seq.desc()
    rows = [_facet(r) for r in tx.connection.execute(select(schema.audit_facets).where(*conditions).order_by(order).limit(limit))]
    return sorted(rows, key=lambda r: -r.seq)


def seqs_ascending(tx: Transaction, where: FacetFilter, after: int, limit: int) -> list[int]:
    """Matching seqs after ``after``, oldest first (for exports, read in batches)."""
    f = schema.audit_facets.c
    query = select(f.seq).where(*where.conditions(), f.seq > after).order_by(f.seq).limit(limit)
    return [r.seq for r in tx.connection.execute(query)]


def exists_newer(tx: Transaction, where: FacetFilter, seq: int) -> bool:
    f = schema.audit_facets.c
    return tx.connection.execute(select(f.seq).where(*where.conditions(), f.seq > seq).limit(1)).first() is not None


def latest(tx: Transaction, operation: str) -> Facet | None:
    """The newest successful record of ``operation``."""
    f = schema.audit_facets.c
    row = tx.connection.execute(
        select(schema.audit_facets).where(and_(f.operation == operation, f.status == 200)).order_by(f.seq.desc()).limit(1)
    ).first()
    return None if row is None else _facet(row)


def daily(tx: Transaction, since_day: int) -> list[tuple[int, str, str, str, int]]:
    """(day, organization, purpose, kind, requests) from ``since_day`` on."""
    d = schema.audit_daily.c
    rows = tx.connection.execute(select(d.day, d.organization, d.purpose, d.kind, d.requests).where(d.day >= since_day))
    return [(r.day, r.organization, r.purpose, r.kind, r.requests) for r in rows]


def review_summary(tx: Transaction) -> list[tuple[str | None, str | None, str, int, float | None]]:
    """(organization, purpose, review state, identifications, oldest time) per group."""
    f = schema.audit_facets.c
    rows = tx.connection.execute(
        select(f.organization, f.purpose, f.review, func.count(), func.min(f.time))
        .where(f.review.is_not(None)).group_by(f.organization, f.purpose, f.review)
    )
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def candidate_bands(tx: Transaction, edges: Sequence[float]) -> list[tuple[int, str, int]]:
    """(band index, outcome, candidates): band i holds similarities in [edges[i], edges[i+1])
    (the last band is closed at 100)."""
    c = schema.review_candidates.c
    band = case(*[(c.similarity >= edge, index) for index, edge in reversed(list(enumerate(edges)))], else_=-1)
    rows = tx.connection.execute(select(band.label("band"), c.outcome, func.count()).group_by(band, c.outcome))
    return [(r[0], r[1], r[2]) for r in rows]


def last_use(tx: Transaction, key_ids: Sequence[str]) -> dict[str, tuple[int, float | None]]:
    """(seq, time) of each key's newest record, for the keys that have one."""
    if not key_ids:
        return {}
    f = schema.audit_facets.c
    newest = (select(f.key_id, func.max(f.seq).label("seq")).where(f.key_id.in_(list(key_ids))).group_by(f.key_id)).subquery()
    rows = tx.connection.execute(
        select(newest.c.key_id, newest.c.seq, f.time).select_from(newest.join(schema.audit_facets, f.seq == newest.c.seq))
    )
    return {r.key_id: (r.seq, r.time) for r in rows}


def seqs_of(tx: Transaction, operations: Sequence[str]) -> list[int]:
    """Seqs of the successful records of these operations, oldest first (few: administrative)."""
    f = schema.audit_facets.c
    rows = tx.connection.execute(select(f.seq).where(and_(f.operation.in_(list(operations)), f.status == 200)).order_by(f.seq))
    return [r.seq for r in rows]
