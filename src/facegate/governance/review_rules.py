"""Which identifications a person must review before anyone acts on them.

Amazon's guidance for public-safety use is a 99% threshold *and* a trained person reviewing
every match. An identification (a 1:N search) that was allowed, answered and returned at
least one match enters the review queue when its key's purpose is one of the review
purposes in force when it was recorded. Those purposes are set by an audited
``facegate:ReviewPurposes`` record (``facegate review purposes --set``), so the queue
follows from the audit chain alone; before any such record, ``DEFAULT_REVIEW_PURPOSES``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

IDENTIFICATIONS = frozenset({"SearchFaces", "SearchFacesByImage", "SearchUsers", "SearchUsersByImage"})
DEFAULT_REVIEW_PURPOSES = ("criminal_investigation", "missing_children", "trafficking_victims")
REVIEW_PURPOSES_OPERATION = "facegate:ReviewPurposes"
REVIEW_DECISION_OPERATION = "facegate:ReviewDecision"
OUTCOMES = ("confirmed", "rejected", "inconclusive")
PENDING = "pending"


def needs_review(record: dict[str, Any], purposes: frozenset[str]) -> bool:
    """Whether a hashed audit record is an identification that must be reviewed."""
    summary = record.get("summary")
    matches = summary.get("matches") if isinstance(summary, dict) else None
    return (
        record.get("operation") in IDENTIFICATIONS
        and record.get("decision") == "allow"
        and record.get("status") == 200
        and record.get("purpose") in purposes
        and isinstance(matches, int) and matches > 0
    )


def purposes_of(record: dict[str, Any]) -> frozenset[str] | None:
    """The purposes a ``facegate:ReviewPurposes`` record sets (None if it sets nothing)."""
    summary = record.get("summary")
    if record.get("operation") != REVIEW_PURPOSES_OPERATION or record.get("status") != 200 or not isinstance(summary, dict):
        return None
    purposes = summary.get("purposes")
    return frozenset(p for p in purposes if isinstance(p, str)) if isinstance(purposes, list) else None


def overall(outcomes: list[str]) -> str:
    """An identification's outcome from its candidates': confirmed if any was, rejected if
    all were, else inconclusive."""
    if "confirmed" in outcomes:
        return "confirmed"
    return "rejected" if outcomes and all(o == "rejected" for o in outcomes) else "inconclusive"


def review_states(records: Iterable[dict[str, Any]]) -> dict[int, str]:
    """Each identification under review, by seq: ``pending`` or its decision's outcome,
    from hashed records in chain order (what ``facegate audit show`` marks)."""
    purposes, states = frozenset(DEFAULT_REVIEW_PURPOSES), {}
    for record in records:
        seq, summary = record.get("seq"), record.get("summary")
        if not isinstance(seq, int):
            continue
        purposes = purposes_of(record) or purposes
        if needs_review(record, purposes):
            states[seq] = PENDING
        elif record.get("operation") == REVIEW_DECISION_OPERATION and record.get("status") == 200 and isinstance(summary, dict):
            decided = summary.get("identification_seq")
            if states.get(decided) == PENDING and summary.get("outcome") in OUTCOMES:
                states[decided] = summary["outcome"]
    return states
