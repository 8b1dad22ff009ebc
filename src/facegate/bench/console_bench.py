"""The console at a million audit records: every page must answer in under 300 ms.

Builds a log shaped like a busy deployment's (20 organisations, every purpose, cases of
about ten requests, 5% denials, identifications with candidates, human-review decisions),
chained exactly as ``audit.append`` chains it but written in bulk; indexes it as the console
does on first use (timed: a one-off cost after upgrading), runs ``facegate audit verify`` as
the overview does (timed), then times each page over real HTTP with a logged-in session.
"""

from __future__ import annotations

import json
import random
import re
import statistics
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from starlette.applications import Starlette
from starlette.routing import Mount

from facegate.bench.local_server import serving
from facegate.console.app import create_console
from facegate.governance import audit_index, review
from facegate.governance.console_accounts import add_account
from facegate.governance.identity import BUILT_IN_PURPOSES
from facegate.governance.rejections import RejectionLog
from facegate.store import schema
from facegate.store.audit_chain import GENESIS, HEAD_SETTING, canonical, columns, digest
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.secrets import SecretBox

BUDGET_MS = 300.0
_OPERATIONS = [("SearchFacesByImage", 40), ("IndexFaces", 20), ("DetectFaces", 20), ("CompareFaces", 10), ("ListFaces", 10)]
_SENSITIVE = ("criminal_investigation", "missing_children", "trafficking_victims")
_PASSWORD = "benchmark password 0001"


def _records(count: int, seed: int) -> Any:
    """``count`` gate-shaped records over the last 30 days, oldest first."""
    rng = random.Random(seed)
    operations = [name for name, weight in _OPERATIONS for _ in range(weight)]
    start = time.time() - 30 * 86_400
    case = 0
    for i in range(count):
        org = f"org-{rng.randrange(20):02d}"
        purpose = rng.choice(BUILT_IN_PURPOSES)
        operation = rng.choice(operations)
        denied = rng.random() < 0.05
        if purpose in _SENSITIVE and rng.random() < 0.1:
            case += 1
        summary: dict[str, Any] = {}
        if operation == "SearchFacesByImage" and not denied and rng.random() < 0.3:
            candidates = [{"FaceId": str(uuid.UUID(int=rng.getrandbits(128))), "ExternalImageId": f"person-{rng.randrange(10**6)}",
                           "Similarity": round(rng.uniform(99.0 if purpose in _SENSITIVE else 80.0, 100.0), 4)}
                          for _ in range(rng.randint(1, 3))]
            summary = {"matches": len(candidates), "top_similarity": max(c["Similarity"] for c in candidates),
                       "candidates": candidates, "face_ids": [c["FaceId"] for c in candidates]}
        yield {
            "time": start + i * (30 * 86_400 / count), "request_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "key_id": f"AKIABENCH{org[-2:]}{rng.randrange(3):07d}", "organization": org, "sector": "law_enforcement",
            "purpose": purpose, "operation": operation, "collection": f"{org}-collection",
            "case_reference": f"CASE-{case}" if purpose in _SENSITIVE else None,
            "threshold": 99.0 if operation in ("SearchFacesByImage", "CompareFaces") else None,
            "decision": "deny" if denied else "allow",
            "policies": ["threshold-floors/threshold-floor-99"] if denied else ["baseline/allow-own-collections"],
            "status": 400 if denied else 200, "error_type": "AccessDeniedException" if denied else None, "summary": summary,
        }


def write_log(store: Store, count: int, seed: int = 13, batch: int = 10_000) -> float:
    """Append ``count`` records chained as ``audit.append`` chains them; returns seconds."""
    started = time.perf_counter()
    previous, seq, rows = GENESIS, 0, []
    for fields in _records(count, seed):
        seq += 1
        record = {**fields, "seq": seq, "prev_hash": previous}
        text = canonical(record)
        previous = digest(text)
        rows.append({**columns(record), "record": text, "hash": previous})
        if len(rows) == batch or seq == count:
            with store.transaction() as tx:
                tx.connection.execute(insert(schema.audit_log), rows)
                tx.set_setting(HEAD_SETTING, json.dumps({"seq": seq, "hash": previous}))
            rows = []
    return time.perf_counter() - started


class _Browser:
    """A logged-in console session over real HTTP (cookies kept, redirects not followed)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.endpoint + path, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def log_in(self, account: str, password: str) -> None:
        _, page = self.get("/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        body = urllib.parse.urlencode({"csrf_token": token, "account": account, "password": password, "next": "/console/"})
        try:
            self.opener.open(urllib.request.Request(self.endpoint + "/console/login", body.encode(), method="POST"), timeout=60)
        except urllib.error.HTTPError as error:
            if error.code != 303:
                raise


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _pages(store: Store, count: int) -> dict[str, str]:
    """The pages timed, with filters that select a case, an organisation, a time window..."""
    pending = review.pending_page(store, 1)
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 15 * 86_400))
    next_day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 14 * 86_400))
    return {
        "overview": "/console/",
        "audit, newest": "/console/audit",
        "audit, a page in the middle": f"/console/audit?before={count // 2}",
        "audit, one case": "/console/audit?case_reference=CASE-1234",
        "audit, organisation and purpose": "/console/audit?organization=org-07&purpose=missing_children",
        "audit, operation and decision": "/console/audit?operation=CompareFaces&decision=deny",
        "audit, one day two weeks ago": f"/console/audit?since={day}&until={next_day}",
        "audit, one key": "/console/audit?key_id=AKIABENCH070000001",
        "audit, a filter matching nothing": "/console/audit?organization=org-07&purpose=no_such_purpose",
        "one record": f"/console/audit/{count // 3}",
        "a case": "/console/case?ref=CASE-1234",
        "review queue": "/console/review",
        "one identification to review": f"/console/review/{pending[0].seq}" if pending else "/console/review",
        "policies": "/console/policies",
        "organisations and keys": "/console/organizations",
        "collections": "/console/collections",
        "accuracy": "/console/accuracy",
    }


def run_console_bench(records: int = 1_000_000, repeats: int = 15, reviews: int = 300) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="facegate-console-bench-") as directory:
        data_dir = Path(directory)
        store = open_store(sqlite_url(data_dir))
        try:
            written = write_log(store, records)
            started = time.perf_counter()
            audit_index.refresh(store)
            indexed = time.perf_counter() - started
            for item in review.pending_page(store, reviews):
                outcome = "rejected" if item.seq % 7 == 0 else "confirmed"
                ids = {c.id: outcome for c in review.candidates(item.record)}
                review.record_review(store, item.seq, ids, "benchmark decision", actor="console:bench")
            add_account(store, "bench", "admin", _PASSWORD)
            app, console = create_console(store, SecretBox.for_data_dir(data_dir), data_dir, RejectionLog(store).record,
                                          data_dir / "reports")
            started = time.perf_counter()
            console.chain.verify_now()
            console.chain.wait()
            verified = time.perf_counter() - started
            verdict = console.chain.state(refresh=False).verdict
            timings: dict[str, dict[str, float]] = {}
            with serving(Starlette(routes=[Mount("/console", app)])) as endpoint:
                browser = _Browser(endpoint)
                browser.log_in("bench", _PASSWORD)
                for name, path in _pages(store, records).items():
                    status, _ = browser.get(path)  # warm: the first read of a page's rows from disk
                    if status != 200:
                        raise RuntimeError(f"{path} answered {status}")
                    samples = []
                    for _ in range(repeats):
                        started = time.perf_counter()
                        browser.get(path)
                        samples.append(1000 * (time.perf_counter() - started))
                    samples.sort()
                    timings[name] = {"path": path, "median_ms": round(statistics.median(samples), 1),  # type: ignore[dict-item]
                                     "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 1), "max_ms": round(samples[-1], 1)}
        finally:
            store.close()
    slowest = max(timings.values(), key=lambda t: t["p95_ms"])
    return {
        "audit_records": records,
        "write_log_seconds": round(written, 1),
        "first_index_seconds": round(indexed, 1),
        "audit_verify_seconds": round(verified, 1),
        "audit_verify_ok": bool(verdict and verdict.ok),
        "review_decisions": reviews,
        "repeats_per_page": repeats,
        "budget_ms": BUDGET_MS,
        "pages": timings,
        "slowest_p95_ms": slowest["p95_ms"],
        "all_pages_within_budget": all(t["p95_ms"] < BUDGET_MS for t in timings.values()),
        "date": time.strftime("%Y-%m-%d"),
    }
