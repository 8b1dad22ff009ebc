"""The overview: requests, identifications and denials over the last 30 days, by organisation
and by purpose, and the state of the audit chain. Counts come from the audit index's daily
totals, so the page costs the same at a thousand records or a million."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from facegate.console import svg
from facegate.console.context import PREFIX, Console
from facegate.governance import audit_index, review
from facegate.governance.console_accounts import Session
from facegate.store import audit_facets

DAYS = 30
KINDS = ["request", "identification", "denial"]


def routes(console: Console) -> list[Route]:
    def overview(request: Request, session: Session, _: dict[str, str]) -> Response:
        audit_index.refresh(console.store)
        today = int(time.time() // 86_400)
        first = today - DAYS + 1
        with console.store.reader() as tx:
            rows = audit_facets.daily(tx, first)
        per_day = {kind: [0] * DAYS for kind in KINDS}
        by_org: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        by_purpose: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(KINDS, 0))
        for day, organization, purpose, kind, n in rows:
            if kind in per_day and first <= day <= today:
                per_day[kind][day - first] += n
                by_org[organization or "(none)"][kind] += n
                by_purpose[purpose or "(none)"][kind] += n
        labels = [dt.date.fromordinal(dt.date(1970, 1, 1).toordinal() + d).isoformat() for d in range(first, today + 1)]
        plots = [
            svg.line_chart(f"Requests, identifications and denials per day (last {DAYS} days, UTC)", labels,
                           {f"{kind}s": per_day[kind] for kind in KINDS}),
            svg.bar_chart("By organisation", sorted(by_org.items(), key=lambda r: -r[1]["request"]), KINDS),
            svg.bar_chart("By purpose", sorted(by_purpose.items(), key=lambda r: -r[1]["request"]), KINDS),
        ]
        groups = review.by_group(console.store)
        pending = sum(g.pending for g in groups)
        oldest = max((g.oldest_pending_seconds for g in groups if g.oldest_pending_seconds is not None), default=None)
        totals = {kind: sum(per_day[kind]) for kind in KINDS}
        return console.render(request, "overview.html", session, plots=plots, chain=console.chain.state(), totals=totals,
                              pending=pending, oldest=oldest, days=DAYS)

    def verify(request: Request, session: Session, _: dict[str, str]) -> Response:
        console.chain.verify_now()
        return RedirectResponse(f"{PREFIX}/", 303)

    return [Route("/", console.page("auditor", overview)),
            Route("/verify", console.page("auditor", verify), methods=["POST"])]
