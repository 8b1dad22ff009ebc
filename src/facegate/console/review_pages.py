"""Human review: the queue, one identification to decide, and how the decisions add up.

Every role sees the queue, its age and the confirmation rate per organisation and purpose,
and the observed false match rate per similarity band beside the published one; a reviewer
(or admin) records decisions, through ``governance/review.record_review``, which appends
them to the audit chain linked to the identification's record.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from facegate.console.context import PREFIX, SECURITY_HEADERS, Console
from facegate.governance import audit_index, review
from facegate.governance.console_accounts import Session, actor
from facegate.governance.review import ReviewError
from facegate.governance.review_rules import OUTCOMES
from facegate.store import audit_facets

QUEUE_PAGE = 50


@cache
def published_fmr() -> list[dict[str, Any]]:
    """Each shipped calibration's false match rate at similarity 80, 90, 95 and 99, as
    measured when it was fitted (``engine/calibration*.json``, ``provenance``)."""
    out = []
    for entry in sorted(resources.files("facegate.engine").iterdir(), key=lambda e: e.name):
        if entry.name.startswith("calibration") and entry.name.endswith(".json"):
            provenance = json.loads(entry.read_text()).get("provenance") or {}
            measured = provenance.get("measured_on_fit_pairs") or {}
            out.append({"model_version": provenance.get("model_version", entry.name), "fmr": measured.get("fmr") or {},
                        "impostor_pairs": provenance.get("impostor_pairs"), "date": provenance.get("date")})
    return out


def routes(console: Console) -> list[Route]:
    def queue(request: Request, session: Session, _: dict[str, str]) -> Response:
        before = request.query_params.get("before", "")
        pending = review.pending_page(console.store, QUEUE_PAGE + 1, int(before) if before.isdigit() and len(before) < 19 else None)
        older = pending[QUEUE_PAGE - 1].seq if len(pending) > QUEUE_PAGE else None
        return console.render(request, "review.html", session, pending=pending[:QUEUE_PAGE], older=older,
                              groups=review.by_group(console.store), bands=review.bands(console.store),
                              published=published_fmr(), purposes=sorted(review.review_purposes(console.store)),
                              done=request.query_params.get("done"))

    def identification(request: Request, session: Session, _: dict[str, str]) -> Response:
        seq = request.path_params["seq"]
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            facet = audit_facets.facet(tx, seq)
            shown = audit_index.checked(tx, [seq])
        if facet is None or facet.review is None or not shown:
            return console.render(request, "refused.html", session, 404, error="NotFound",
                                  message=f"Record {seq} is not an identification under review.")
        return console.render(request, "review_item.html", session, facet=facet, shown=shown[0],
                              candidates=review.candidates(shown[0].record), outcomes=OUTCOMES, error=None)

    def decide(request: Request, session: Session, form: dict[str, str]) -> Response:
        seq = request.path_params["seq"]
        outcomes = {key.removeprefix("outcome:"): value for key, value in form.items() if key.startswith("outcome:")}
        try:
            record = review.record_review(console.store, seq, outcomes, form.get("reason", ""), actor=actor(session.account))
        except ReviewError as exc:
            return console.render(request, "refused.html", session, 400, error="ReviewError", message=str(exc))
        message = f"record {seq}: {record['summary']['outcome']} (audit record {record['seq']})"
        return RedirectResponse(f"{PREFIX}/review?done={quote(message, safe='')}", 303, headers=SECURITY_HEADERS)

    return [
        Route("/review", console.page("auditor", queue)),
        Route("/review/{seq:int}", console.page("auditor", identification)),
        Route("/review/{seq:int}", console.page("reviewer", decide), methods=["POST"]),
    ]
