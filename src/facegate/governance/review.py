"""Human review of identifications: the decisions, the purposes that need them, the queue.

A reviewer decides each candidate of an identification under review (``review_rules.py``):
confirmed, rejected or inconclusive, with a reason. The decision is one audit record,
``facegate:ReviewDecision``, naming the identification's seq and hash, appended in the same
transaction that checks the identification is still pending, so no identification is
decided twice. The API's responses never change: review happens after the answer, before
anyone acts on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from facegate.governance import audit, audit_index
from facegate.governance.review_rules import OUTCOMES, PENDING, REVIEW_DECISION_OPERATION, REVIEW_PURPOSES_OPERATION, overall
from facegate.store import audit_facets
from facegate.store.audit_chain import digest
from facegate.store.audit_facets import FacetFilter
from facegate.store.database import Store

MAX_REASON = 1_000
SIMILARITY_BANDS = (80.0, 90.0, 95.0, 99.0)
"""Lower edges of the bands the observed false match rate is given for (the last is 99-100),
the thresholds the calibration publishes its false match rate at."""


class ReviewError(ValueError):
    """A review decision or setting that cannot be recorded."""


@dataclass(frozen=True)
class Candidate:
    """One match of an identification: a FaceId (with its ExternalImageId) or a UserId."""

    id: str
    kind: str  # FaceId | UserId
    external_image_id: str | None
    similarity: float | None  # 0-100; None in records made before candidates were recorded


def candidates(record: dict[str, Any]) -> list[Candidate]:
    """The matches an identification's record names, best first as the response gave them."""
    summary = record.get("summary") if isinstance(record.get("summary"), dict) else {}
    listed = summary.get("candidates")
    if isinstance(listed, list):
        out = []
        for c in listed:
            if isinstance(c, dict) and isinstance(c.get("FaceId") or c.get("UserId"), str):
                kind = "FaceId" if "FaceId" in c else "UserId"
                similarity = c.get("Similarity")
                out.append(Candidate(c[kind], kind, c.get("ExternalImageId"),
                                     float(similarity) if isinstance(similarity, (int, float)) else None))
        return out
    face_ids = summary.get("face_ids") if isinstance(summary.get("face_ids"), list) else []
    return [Candidate(f, "FaceId", None, None) for f in face_ids if isinstance(f, str)]


def set_review_purposes(store: Store, purposes: list[str], actor: str = audit.ADMINISTRATOR) -> frozenset[str]:
    """Set which purposes' identifications enter review from the next record on (audited)."""
    cleaned = sorted(set(purposes))
    bad = [p for p in cleaned if not p or not p.replace("_", "").replace("-", "").isalnum() or len(p) > 64]
    if bad:
        raise ReviewError(f"a purpose is a word like criminal_investigation, got {bad[0]!r}")
    with store.transaction() as tx:
        audit.append(tx, audit.administrative(REVIEW_PURPOSES_OPERATION, {"purposes": cleaned}, actor))
    return frozenset(cleaned)


def review_purposes(store: Store) -> frozenset[str]:
    """The purposes in force now."""
    audit_index.refresh(store)
    with store.reader() as tx:
        return audit_index.purposes_in_force(tx)


def record_review(
    store: Store, identification_seq: int, outcomes: dict[str, str], reason: str, actor: str = audit.ADMINISTRATOR
) -> dict[str, Any]:
    """Record a decision on every candidate of a pending identification (``outcomes`` maps
    each candidate's id to confirmed, rejected or inconclusive); returns the audit record."""
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise ReviewError(f"give a reason (1 to {MAX_REASON} characters)")
    audit_index.refresh(store)
    with store.transaction() as tx:
        while audit_index.index_next(tx, audit_index.BATCH):
            pass  # whatever was appended since: a decision made meanwhile must be seen
        facet = audit_facets.facet(tx, identification_seq)
        if facet is None or facet.review is None:
            raise ReviewError(f"record {identification_seq} is not an identification under review")
        if facet.review != PENDING:
            raise ReviewError(f"record {identification_seq} was already reviewed, in record {facet.reviewed_by}")
        row = audit_facets.rows_at(tx, [identification_seq])[identification_seq]
        record = audit_index.parsed(row)
        if record is None or digest(row.record) != row.hash:
            raise ReviewError(f"record {identification_seq} does not match its hash: run facegate audit verify")
        listed = candidates(record)
        missing = [c.id for c in listed if outcomes.get(c.id) not in OUTCOMES]
        if missing or not listed:
            raise ReviewError(f"decide every candidate ({', '.join(OUTCOMES)}): {', '.join(missing) or 'none listed'}")
        decided = [{"id": c.id, "kind": c.kind, "similarity": c.similarity, "outcome": outcomes[c.id]} for c in listed]
        summary = {"identification_seq": identification_seq, "identification_hash": row.hash, "candidates": decided,
                   "outcome": overall([d["outcome"] for d in decided]), "reason": reason}
        fields = {**audit.administrative(REVIEW_DECISION_OPERATION, summary, actor, record.get("organization")),
                  "purpose": "human_review", "case_reference": record.get("case_reference")}
        appended = audit.append(tx, fields)
        audit_index.index_next(tx, audit_index.BATCH)
    return appended


@dataclass(frozen=True)
class GroupReview:
    """The queue and the decisions for one organisation and purpose."""

    organization: str | None
    purpose: str | None
    pending: int
    oldest_pending_seconds: float | None
    confirmed: int
    rejected: int
    inconclusive: int

    @property
    def confirmation_rate(self) -> float | None:
        decided = self.confirmed + self.rejected + self.inconclusive
        return self.confirmed / decided if decided else None


def by_group(store: Store, now: float | None = None) -> list[GroupReview]:
    """Identifications under review per organisation and purpose (from the audit index)."""
    now = time.time() if now is None else now
    audit_index.refresh(store)
    with store.reader() as tx:
        rows = audit_facets.review_summary(tx)
    groups: dict[tuple[str | None, str | None], dict[str, Any]] = {}
    for organization, purpose, state, count, oldest in rows:
        group = groups.setdefault((organization, purpose), {s: 0 for s in (PENDING, *OUTCOMES)} | {"oldest": None})
        group[state] = group.get(state, 0) + count
        if state == PENDING and oldest is not None:
            group["oldest"] = now - oldest
    return [GroupReview(o, p, g[PENDING], g["oldest"], g["confirmed"], g["rejected"], g["inconclusive"])
            for (o, p), g in sorted(groups.items(), key=lambda item: (str(item[0][0]), str(item[0][1])))]


@dataclass(frozen=True)
class Band:
    """Candidates decided in one similarity band; the rejected share of those confirmed or
    rejected is the deployment's observed false match rate there."""

    low: float
    high: float
    confirmed: int
    rejected: int
    inconclusive: int

    @property
    def observed_fmr(self) -> float | None:
        decided = self.confirmed + self.rejected
        return self.rejected / decided if decided else None


def bands(store: Store) -> list[Band]:
    audit_index.refresh(store)
    with store.reader() as tx:
        rows = audit_facets.candidate_bands(tx, SIMILARITY_BANDS)
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(OUTCOMES, 0) for i in range(len(SIMILARITY_BANDS))}
    for index, outcome, n in rows:
        if index in counts and outcome in OUTCOMES:
            counts[index][outcome] += n
    edges = (*SIMILARITY_BANDS, 100.0)
    return [Band(edges[i], edges[i + 1], c["confirmed"], c["rejected"], c["inconclusive"]) for i, c in counts.items()]


def pending_page(store: Store, limit: int, before: int | None = None) -> list[audit_index.Checked]:
    """Pending identifications, newest first."""
    audit_index.refresh(store)
    where = FacetFilter(review=PENDING)
    with store.reader() as tx:
        seqs = [f.seq for f in audit_facets.page(tx, where, limit, before)]
        return audit_index.checked(tx, seqs)
