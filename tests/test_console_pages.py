"""The console's read-only pages: overview plots, collections, accuracy reports."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from facegate.governance import console_accounts
from facegate.store.records import FaceRecord
from tests.support.console import CHEAP_HASHER, console_under_test, identification


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.setattr(console_accounts, "_hasher", CHEAP_HASHER)
    with console_under_test(tmp_path) as under_test:
        yield under_test


def test_the_overview_plots_requests_identifications_and_denials_as_inline_svg(console):
    client = console.logged_in("audrey", "auditor")
    for _ in range(3):
        identification(console.store, organization="metro", purpose="missing_children")
    page = client.get("/console/").text
    assert page.count("<svg viewBox") == 3 and "<script" not in page
    assert 'aria-label="By organisation: metro: request 3, identification 3, denial 0"' in page
    assert "3 requests, 3 identifications answered, 0 denied" in page
    assert "1 identification waiting for review" not in page and "3 identifications waiting for review" in page


def test_the_collections_page_shows_counts_tags_and_the_next_retention_deletion(console):
    client = console.logged_in("audrey", "auditor")
    created = time.time() - 10 * 86_400
    with console.store.transaction() as tx:
        collection = tx.create_collection("metro", "suspects", "arn:aws:rekognition:us-east-1:0:collection/suspects", "dlib-test")
        tx.set_tags(collection.pk, {"facegate:retention-days": "30", "facegate:consent": "required", "unit": "cid"})
        tx.insert_faces([FaceRecord("f-1", collection.pk, "i-1", "person-1", None, (0.1, 0.1, 0.5, 0.5), 99.0,
                                    np.zeros(128, np.float32), "dlib-test", "fp", created)])
    page = client.get("/console/collections").text
    due = time.strftime("%Y-%m-%d", time.gmtime(created + 30 * 86_400))
    assert "suspects" in page and "dlib-test" in page and "30 days" in page and "required" in page and "unit=cid" in page
    assert due in page and "<td>1</td>" in page


def _report(directory, name: str, fmr: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    folder = directory / name
    folder.mkdir(parents=True)
    groups = [{"attribute": "gender", "group": g, "n_photos": 100, "fmr": v, "fnmr": 0.01, "fmr_ratio_to_lowest": 1.0}
              for g, v in fmr.items()]
    (folder / "report.json").write_text(json.dumps({"groups": groups, "model_version": "m", "date": "2026-11-27"}))
    (folder / "det_gender.png").write_bytes(b"\x89PNG\r\n\x1a\n")


def test_the_accuracy_page_warns_where_the_worst_groups_fmr_is_over_twice_the_best(console):
    client = console.logged_in("audrey", "auditor")
    reports = console.console.reports_dir
    _report(reports, "lfw-gender", {"female": 0.0025, "male": 0.001})
    _report(reports, "even", {"female": 0.0019, "male": 0.001})
    page = client.get("/console/accuracy").text
    assert page.count("Operator warning") == 1 and "female (0.250%) is 2.5x that of male" in page
    assert '<img src="/console/reports/lfw-gender/det_gender.png"' in page
    plot = client.get("/console/reports/lfw-gender/det_gender.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
    assert client.get("/console/reports/lfw-gender/report.json").status_code == 404
    assert client.get("/console/reports/..%2F..%2Fdata/facegate.db").status_code == 404


def test_the_server_serves_the_console_beside_an_unchanged_rekognition_endpoint(tmp_path):
    import urllib.error
    import urllib.request

    from tests.support.console import records
    from tests.support.server import running_server

    with running_server(tmp_path / "data") as server:
        before = len(records(server.facegate.store))
        opener = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,),
                                                  {"redirect_request": lambda *a, **k: None})())
        with pytest.raises(urllib.error.HTTPError) as redirected:
            opener.open(f"{server.endpoint}/console/audit")
        assert redirected.value.code == 303 and redirected.value.headers["location"] == "/console/login?next=/console/audit"
        assert len(records(server.facegate.store)) == before  # reading the console is not a request to the gate
        assert server.client().list_collections()["CollectionIds"] == []
        with pytest.raises(urllib.error.HTTPError) as unsigned:
            urllib.request.urlopen(urllib.request.Request(f"{server.endpoint}/", b"{}", method="POST"))
        assert unsigned.value.code == 400 and b"__type" in unsigned.value.read()
