"""The console's audit pages, exports and human review, on a real store.

Filters run on the audit index, but every record shown or exported is read (and checked)
from the hashed log; review decisions are appended to the chain linked to the
identification's record, and `facegate audit verify` still passes.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from sqlalchemy import text

from facegate.bench.local_server import FACEGATE
from facegate.governance import audit_index, console_accounts, review
from facegate.governance.audited_state import verify_database
from facegate.governance.review import ReviewError
from facegate.governance.review_rules import DEFAULT_REVIEW_PURPOSES
from facegate.store.database import open_store
from facegate.store.migrations import MIGRATIONS, current_version
from tests.support.console import CHEAP_HASHER, console_under_test, identification, post, records


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.setattr(console_accounts, "_hasher", CHEAP_HASHER)
    with console_under_test(tmp_path) as under_test:
        yield under_test


def _seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'<td data-label="Seq"><a href="/console/audit/(\d+)">', html)]


def _verified(store) -> None:  # type: ignore[no-untyped-def]
    with store.snapshot() as tx:
        verdict = verify_database(tx)
    assert verdict.ok, verdict.problems


def test_the_audit_page_filters_by_case_and_pages_newest_first(console):
    client = console.logged_in("audrey", "auditor")
    wanted = [identification(console.store, case_reference="CASE-7")["seq"] for _ in range(60)]
    others = [identification(console.store, case_reference="CASE-8", organization="other")["seq"] for _ in range(5)]
    first = client.get("/console/audit?case_reference=CASE-7")
    assert _seqs(first.text) == sorted(wanted, reverse=True)[:50]
    older = re.search(r'href="([^"]+before=\d+)"', first.text).group(1).replace("&amp;", "&")
    second = client.get(older)
    assert _seqs(second.text) == sorted(wanted, reverse=True)[50:]
    newer = re.search(r'href="([^"]+after=\d+)"', second.text).group(1).replace("&amp;", "&")
    assert _seqs(client.get(newer).text) == _seqs(first.text)
    assert set(_seqs(client.get("/console/audit?organization=other").text)) == set(others)
    assert _seqs(client.get("/console/audit?decision=deny").text) == []


def test_a_bad_filter_is_a_400_that_says_why(console):
    client = console.logged_in("audrey", "auditor")
    response = client.get("/console/audit?since=yesterday")
    assert response.status_code == 400 and "since must be a date" in response.text


def test_the_case_page_lists_a_cases_requests_in_order(console):
    client = console.logged_in("audrey", "auditor")
    seqs = [identification(console.store, case_reference="CASE/2026#9")["seq"] for _ in range(3)]
    identification(console.store, case_reference="OTHER")
    page = client.get("/console/case", params={"ref": "CASE/2026#9"})
    assert _seqs(page.text) == seqs


def test_one_record_shows_its_fields_rules_matches_and_chain_links(console):
    client = console.logged_in("audrey", "auditor")
    record = identification(console.store, similarities=(99.73,))
    with console.store.transaction() as tx:
        from facegate.governance import audit

        audit.append(tx, {**{k: record[k] for k in ("key_id", "organization", "purpose", "operation", "collection")},
                          "decision": "deny", "status": 400, "error_type": "AccessDeniedException", "summary": {},
                          "policies": ["threshold-floors/threshold-floor-99"]})
    page = client.get(f"/console/audit/{record['seq']}").text
    assert record["hash"] in page and "99.73" in page and record["summary"]["candidates"][0]["FaceId"] in page
    denied = client.get(f"/console/audit/{record['seq'] + 1}").text
    assert '@id("threshold-floor-99")' in denied.replace("&#34;", '"') and "context.threshold &lt; 99" in denied
    assert "is this record&#39;s <code>prev_hash</code>" in denied or "is this record's <code>prev_hash</code>" in denied
    assert client.get("/console/audit/999999").status_code == 404


def test_an_unfiltered_export_is_byte_for_byte_the_clis(console):
    client = console.logged_in("audrey", "auditor")
    for i in range(3):
        identification(console.store, case_reference=f"C-{i}")
    with console.store.engine.begin() as connection:  # an unreadable record is exported too, never dropped
        connection.execute(text("UPDATE audit_log SET record = 'garbled' WHERE seq = 3"))
    for fmt in ("jsonl", "csv"):
        ours = client.get(f"/console/audit/export.{fmt}").content
        theirs = subprocess.run([FACEGATE, "audit", "export", "--format", fmt, "--data-dir", str(console.data_dir)],
                                capture_output=True).stdout
        assert ours == theirs and len(ours.splitlines()) >= 5
    assert b"garbled" in client.get("/console/audit/export.jsonl").content


def test_a_filtered_export_holds_exactly_the_filtered_records_as_hashed(console):
    client = console.logged_in("audrey", "auditor")
    wanted = [identification(console.store, case_reference="CASE-X") for _ in range(2)]
    identification(console.store, case_reference="CASE-Y")
    lines = client.get("/console/audit/export.jsonl?case_reference=CASE-X").text.splitlines()
    assert [json.loads(line) for line in lines] == wanted


def test_an_edited_record_is_shown_flagged_never_hidden(console):
    client = console.logged_in("audrey", "auditor")
    record = identification(console.store, case_reference="CASE-E")
    client.get("/console/audit")  # indexed as it was
    with console.store.engine.begin() as connection:
        edited = record["hash"] and json.dumps({**{k: v for k, v in record.items() if k != "hash"}, "case_reference": "CASE-Z"})
        connection.execute(text("UPDATE audit_log SET record = :r WHERE seq = :s"), {"r": edited, "s": record["seq"]})
    page = client.get("/console/audit?case_reference=CASE-E").text
    assert _seqs(page) == [record["seq"]] and "does not match its hash" in page


def test_an_identification_for_a_sensitive_purpose_waits_for_review(console):
    client = console.logged_in("rita", "reviewer")
    waiting = identification(console.store, purpose="missing_children")
    identification(console.store, purpose="photo_library")
    identification(console.store, purpose="criminal_investigation", similarities=())
    queue = client.get("/console/review").text
    assert re.findall(r'href="/console/review/(\d+)"', queue) == [str(waiting["seq"])]
    assert "pending" in client.get(f"/console/audit?case_reference={waiting['case_reference']}").text
    assert set(DEFAULT_REVIEW_PURPOSES) == review.review_purposes(console.store)


def test_review_decisions_are_appended_to_the_chain_linked_to_the_identification(console):
    client = console.logged_in("rita", "reviewer")
    confirmed, rejected = identification(console.store, similarities=(99.9,)), identification(console.store, similarities=(99.2, 99.1))
    ids = [c["FaceId"] for c in rejected["summary"]["candidates"]]
    response = post(client, f"/console/review/{confirmed['seq']}",
                    {f"outcome:{confirmed['summary']['candidates'][0]['FaceId']}": "confirmed", "reason": "same scar, same tattoo"})
    assert response.status_code == 303
    response = post(client, f"/console/review/{rejected['seq']}", {f"outcome:{ids[0]}": "rejected", f"outcome:{ids[1]}": "rejected",
                                                                  "reason": "different ears"})
    assert response.status_code == 303
    first, second = records(console.store)[-2:]
    assert (first["operation"], first["key_id"], first["summary"]["identification_seq"], first["summary"]["identification_hash"],
            first["summary"]["outcome"]) == ("facegate:ReviewDecision", "console:rita", confirmed["seq"], confirmed["hash"], "confirmed")
    assert second["summary"]["outcome"] == "rejected" and second["case_reference"] == rejected["case_reference"]
    assert "rejected" in client.get(f"/console/audit/{rejected['seq']}").text
    bands = {b.low: b for b in review.bands(console.store)}
    assert (bands[99.0].confirmed, bands[99.0].rejected, bands[99.0].observed_fmr) == (1, 2, 2 / 3)
    (group,) = review.by_group(console.store)
    assert (group.pending, group.confirmed, group.rejected, group.confirmation_rate) == (0, 1, 1, 0.5)
    _verified(console.store)


def test_the_cli_audit_show_marks_pending_and_reviewed_identifications(console):
    pending, rejected = identification(console.store), identification(console.store, similarities=(99.2,))
    unreviewed = identification(console.store, purpose="photo_library")
    review.record_review(console.store, rejected["seq"], {rejected["summary"]["candidates"][0]["FaceId"]: "rejected"}, "not him")
    shown = subprocess.run([FACEGATE, "audit", "show", "--data-dir", str(console.data_dir)], capture_output=True, text=True)
    lines = {int(line.split()[0]): line for line in shown.stdout.splitlines()}
    assert lines[pending["seq"]].endswith("review=pending") and lines[rejected["seq"]].endswith("review=rejected")
    assert "review=" not in lines[unreviewed["seq"]]


def test_an_identification_is_decided_once_and_only_in_full(console):
    client = console.logged_in("rita", "reviewer")
    record = identification(console.store, similarities=(99.5, 99.4))
    ids = [c["FaceId"] for c in record["summary"]["candidates"]]
    partial = post(client, f"/console/review/{record['seq']}", {f"outcome:{ids[0]}": "confirmed", "reason": "r"})
    assert partial.status_code == 400 and ids[1] in partial.text
    review.record_review(console.store, record["seq"], dict.fromkeys(ids, "inconclusive"), "poor light")
    with pytest.raises(ReviewError, match="already reviewed"):
        review.record_review(console.store, record["seq"], dict.fromkeys(ids, "confirmed"), "second opinion")
    with pytest.raises(ReviewError, match="not an identification under review"):
        review.record_review(console.store, record["seq"] + 1, {}, "the decision itself")


def test_an_auditor_sees_the_queue_but_cannot_decide(console):
    client = console.logged_in("audrey", "auditor")
    record = identification(console.store, similarities=(99.5,))
    assert client.get(f"/console/review/{record['seq']}").status_code == 200
    response = post(client, f"/console/review/{record['seq']}", {f"outcome:{record['summary']['candidates'][0]['FaceId']}": "confirmed",
                                                                "reason": "looks alike"})
    assert response.status_code == 403
    assert [r["operation"] for r in records(console.store)].count("facegate:ReviewDecision") == 0


def test_review_purposes_apply_from_their_audit_record_on(console):
    before = identification(console.store, purpose="identity_verification")
    review.set_review_purposes(console.store, ["identity_verification"])
    after = identification(console.store, purpose="identity_verification")
    sensitive = identification(console.store, purpose="missing_children")
    pending = [c.seq for c in review.pending_page(console.store, 10)]
    assert pending == [after["seq"]] and before["seq"] not in pending and sensitive["seq"] not in pending
    _verified(console.store)


def test_the_index_is_a_cache_rebuilt_from_the_log(console):
    record = identification(console.store)
    audit_index.refresh(console.store)
    with console.store.engine.begin() as connection:
        for table in ("audit_facets", "audit_daily", "review_candidates"):
            connection.execute(text(f"DELETE FROM {table}"))
    assert [c.seq for c in review.pending_page(console.store, 10)] == [record["seq"]]


def test_the_migration_to_v6_keeps_an_existing_log_and_indexes_it(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'facegate.db'}")
    try:
        record = identification(store)
        with store.reader() as tx:
            assert current_version(tx.connection) == len(MIGRATIONS) >= 6
        assert [c.seq for c in review.pending_page(store, 10)] == [record["seq"]]
    finally:
        store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    from facegate.store.database import sqlite_url
    from tests.support.postgres import fresh_database

    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return fresh_database(request.getfixturevalue("postgres_server_url"))


def test_accounts_index_and_review_work_on_both_backends(any_database_url, tmp_path, monkeypatch):
    monkeypatch.setattr(console_accounts, "_hasher", CHEAP_HASHER)
    with console_under_test(tmp_path, any_database_url) as under_test:
        client = under_test.logged_in("rita", "reviewer")
        record = identification(under_test.store, case_reference="PG-1", similarities=(99.4,))
        assert _seqs(client.get("/console/audit?case_reference=PG-1").text) == [record["seq"]]
        face_id = record["summary"]["candidates"][0]["FaceId"]
        assert post(client, f"/console/review/{record['seq']}", {f"outcome:{face_id}": "rejected", "reason": "no"}).status_code == 303
        assert [b.rejected for b in review.bands(under_test.store)] == [0, 0, 0, 1]
        assert client.get("/console/").status_code == 200
        _verified(under_test.store)


def test_the_overview_shows_the_chains_state_from_audit_verify(console):
    client = console.logged_in("audrey", "auditor")
    record = identification(console.store)
    client.get("/console/")
    console.console.chain.wait()
    page = client.get("/console/").text
    head = records(console.store)[-1]
    assert "Verified:" in page and head["hash"] in page and f"Up to record <strong>{head['seq']}</strong>" in page
    with console.store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET organization = 'elsewhere' WHERE seq = :s"), {"s": record["seq"]})
    post(client, "/console/verify", {})
    console.console.chain.wait()
    page = client.get("/console/").text
    assert "does not verify" in page and "organization column says" in page
