"""The audit log, one record, one case, and exports: what an oversight body reads.

Filters and pages run on the audit index (``governance/audit_index.py``); every record
shown or exported is read from ``audit_log`` itself. A record whose text no longer matches
its hash, or whose index entry was made from other text, is shown with a warning and never
dropped. An export of the whole log is byte for byte ``facegate audit export``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from facegate.console.context import SECURITY_HEADERS, Console
from facegate.console.rules import rule_text
from facegate.governance import audit_export, audit_index
from facegate.governance.console_accounts import Session
from facegate.governance.review import candidates
from facegate.governance.review_rules import REVIEW_DECISION_OPERATION
from facegate.store import audit_facets
from facegate.store.audit_facets import NO_DECISION, FacetFilter

PAGE_SIZE = 50
CASE_PAGE_SIZE = 500
EXPORT_BATCH = 1_000
FILTERS = ("since", "until", "organization", "key_id", "purpose", "operation", "decision", "case_reference", "collection")


class FilterError(ValueError):
    pass


def _time(value: str, name: str) -> float:
    """``YYYY-MM-DD`` or an ISO time, read as UTC, in epoch seconds."""
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise FilterError(f"{name} must be a date like 2026-11-28 or a time like 2026-11-28T09:30, got {value[:40]!r}") from exc
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)).timestamp()


def parse_filter(request: Request) -> tuple[FacetFilter, dict[str, str]]:
    """The filter in the query string, and its non-empty fields (to carry into links)."""
    given = {name: request.query_params.get(name, "").strip()[:256] for name in FILTERS}
    given = {k: v for k, v in given.items() if v}
    if "decision" in given and given["decision"] not in ("allow", "deny", NO_DECISION):
        raise FilterError(f"decision is allow, deny or {NO_DECISION}")
    values: dict[str, Any] = {k: v for k, v in given.items() if k not in ("since", "until")}
    for name in ("since", "until"):
        if name in given:
            values[name] = _time(given[name], name)
    return FacetFilter(**values), given


def _seq(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) < 19 else None


def routes(console: Console) -> list[Route]:
    def audit_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        try:
            where, given = parse_filter(request)
        except FilterError as exc:
            return console.render(request, "audit.html", session, 400, error=str(exc), given={}, records=[],
                                  newer=None, older=None, operations=[], query="")
        before, after = _seq(request.query_params.get("before")), _seq(request.query_params.get("after"))
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            facets = audit_facets.page(tx, where, PAGE_SIZE + 1, before, after)
            more_older = len(facets) > PAGE_SIZE if after is None else True
            facets = facets[:PAGE_SIZE] if after is None else facets[-PAGE_SIZE:]
            records = audit_index.checked(tx, [f.seq for f in facets], where)
            newer = bool(facets) and audit_facets.exists_newer(tx, where, facets[0].seq)
        query = "&".join(f"{k}={_quote(v)}" for k, v in given.items())
        return console.render(
            request, "audit.html", session, given=given, records=records, query=query, error=None,
            newer=facets[0].seq if newer else None, older=facets[-1].seq if facets and more_older else None,
        )

    def record_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        seq = _seq(request.path_params["seq"])
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            found = audit_index.checked(tx, [seq - 1, seq, seq + 1] if seq else [])
        by_seq = {c.seq: c for c in found}
        if seq is None or seq not in by_seq:
            return console.render(request, "refused.html", session, 404, error="NotFound", message=f"There is no record {seq}.")
        shown = by_seq[seq]
        previous, following = by_seq.get(seq - 1), by_seq.get(seq + 1)
        links = {
            "previous_fits": (previous.record.get("hash") if previous else "0" * 64) == shown.record.get("prev_hash"),
            "next_fits": following is None or following.record.get("prev_hash") == shown.record.get("hash"),
        }
        policies = [(name, rule_text(console.policies, name)) for name in shown.record.get("policies") or [] if isinstance(name, str)]
        matches = candidates(shown.record) if shown.record.get("summary") else []
        return console.render(request, "record.html", session, shown=shown, previous=previous, following=following,
                              links=links, policies=policies, matches=matches, fields=_fields(shown.record),
                              is_decision=shown.record.get("operation") == REVIEW_DECISION_OPERATION)

    def case_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        reference = request.query_params.get("ref", "").strip()[:128]
        after = _seq(request.query_params.get("after")) or 0
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            seqs = audit_facets.seqs_ascending(tx, FacetFilter(case_reference=reference), after, CASE_PAGE_SIZE + 1)
            records = audit_index.checked(tx, seqs[:CASE_PAGE_SIZE], FacetFilter(case_reference=reference)) if reference else []
        more = seqs[CASE_PAGE_SIZE - 1] if len(seqs) > CASE_PAGE_SIZE else None
        return console.render(request, "case.html", session, reference=reference, records=records, more=more,
                              query=f"case_reference={_quote(reference)}")

    def export(request: Request, session: Session, _: dict[str, str]) -> Response:
        fmt = request.path_params["format"]
        if fmt not in ("jsonl", "csv"):
            return console.render(request, "refused.html", session, 404, error="NotFound", message="Exports are .jsonl or .csv.")
        try:
            where, given = parse_filter(request)
        except FilterError as exc:
            return console.render(request, "refused.html", session, 400, error="InvalidFilter", message=str(exc))
        audit_index.refresh(console.store)
        records = _exported(console, where, bool(given))
        lines = audit_export.jsonl(records) if fmt == "jsonl" else audit_export.csv_rows(records)
        media = "application/x-ndjson" if fmt == "jsonl" else "text/csv; charset=utf-8"
        headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="audit.{fmt}"'}
        return StreamingResponse((line.encode() for line in lines), media_type=media, headers=headers)

    return [
        Route("/audit", console.page("auditor", audit_page)),
        Route("/audit/export.{format:str}", console.page("auditor", export)),
        Route("/audit/{seq:str}", console.page("auditor", record_page)),
        Route("/case", console.page("auditor", case_page)),
    ]


def _exported(console: Console, where: FacetFilter, filtered: bool) -> Iterator[dict[str, Any]]:
    """Records in seq order, as ``facegate audit export`` gives them: the whole log read
    straight from ``audit_log`` when unfiltered, else the matching ones, in batches."""
    after = 0
    while True:
        with console.store.reader() as tx:
            if filtered:
                seqs = audit_facets.seqs_ascending(tx, where, after, EXPORT_BATCH)
                rows = audit_facets.rows_at(tx, seqs)
                batch = [rows[s] for s in seqs if s in rows]
            else:
                batch = audit_facets.rows_after(tx, after, EXPORT_BATCH)
                seqs = [r.seq for r in batch]
        for row in batch:
            yield audit_index.parsed(row) or {"seq": row.seq, "hash": row.hash, "unreadable_record": row.record}
        if len(seqs) < EXPORT_BATCH:
            return
        after = seqs[-1]


def _fields(record: dict[str, Any]) -> list[tuple[str, Any]]:
    order = ["seq", "time", "request_id", "key_id", "organization", "sector", "purpose", "operation", "collection",
             "case_reference", "threshold", "decision", "status", "error_type", "count", "source", "prev_hash", "hash"]
    listed = [(k, record[k]) for k in order if k in record]
    return listed + [(k, v) for k, v in record.items() if k not in order and k not in ("policies", "summary")]


def _quote(value: str) -> str:
    return quote(value, safe="")
