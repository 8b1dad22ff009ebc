"""Requests refused before the governance gate are audited too, aggregated so a flood
cannot fill the disk: the first of a kind is on disk before its answer, repeats become one
record with a count when their minute closes (or the server stops)."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from facegate.bench.local_server import FACEGATE, serving
from facegate.governance import audit, rejections
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.governance.rejections import Rejection, RejectionLog
from facegate.server import Facegate
from facegate.store.database import open_store, sqlite_url
from facegate.store.secrets import SecretBox
from tests.support.server import running_server
from tests.support.signing import JSON_1_1, raw_post, raw_request, sign_headers, signed_post

MARKER = "BODY-MARKER-7f3a"
"""Put in request bodies; must never appear in the audit."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    opened = open_store(sqlite_url(tmp_path))
    yield opened
    opened.close()


def on_disk(store) -> list[dict]:
    """The rejection log's records (those with a ``count``), oldest first."""
    with store.reader() as tx:
        return [r for r in audit.stored_records(tx) if "count" in r]


def rejection(n: int = 0, source: str = "198.51.100.1", key_id: str | None = "AKIACLAIMED", operation: str | None = "ListFaces",
              error: str = "InvalidSignatureException") -> Rejection:
    return Rejection(f"request-{n}", source, key_id, operation, error, 400)


def test_the_first_rejection_is_on_disk_at_once_and_its_repeats_are_one_record_when_the_minute_closes(store):
    clock = Clock()
    log = RejectionLog(store, clock=clock)
    start = clock.now
    log.record(rejection(0))
    assert [(r["count"], r["request_id"]) for r in on_disk(store)] == [(1, "request-0")]
    for n in range(1, 300):
        clock.now += 0.1
        log.record(rejection(n))
    clock.now = start + 59
    log.close_expired()
    assert len(on_disk(store)) == 1  # repeats are only counted until the window closes
    clock.now = start + 61
    log.close_expired()
    first, repeats = on_disk(store)
    assert {k: v for k, v in first.items() if k not in ("seq", "prev_hash", "hash")} == {
        "time": start, "window_start": start, "request_id": "request-0", "count": 1, "source": "198.51.100.1",
        "key_id": "AKIACLAIMED", "organization": None, "operation": "ListFaces", "error_type": "InvalidSignatureException",
        "status": 400, "decision": None,
    }
    assert (repeats["count"], repeats["request_id"], repeats["window_start"]) == (299, "request-1", start)
    with store.reader() as tx:
        assert audit.verify(audit.stored_records(tx)).ok


def test_distinct_keys_sources_operations_and_errors_are_separate_records(store):
    log = RejectionLog(store, clock=Clock())
    variants = [rejection(), rejection(source="198.51.100.2"), rejection(key_id="AKIAOTHER"), rejection(key_id=None),
                rejection(operation="DeleteCollection"), rejection(operation=None), rejection(error="UnrecognizedClientException")]
    for variant in variants * 3:
        log.record(variant)
    assert len(on_disk(store)) == len(variants)
    log.close_all()
    records = on_disk(store)
    assert len(records) == 2 * len(variants) and sum(r["count"] for r in records) == 3 * len(variants)


def test_a_rejection_after_the_window_closed_opens_a_new_one_on_disk(store):
    clock = Clock()
    log = RejectionLog(store, clock=clock)
    log.record(rejection(0))
    clock.now += 61
    log.record(rejection(1))
    assert [(r["request_id"], r["count"]) for r in on_disk(store)] == [("request-0", 1), ("request-1", 1)]


def test_the_organisation_is_recorded_only_for_a_claimed_key_that_exists(store, tmp_path):
    key = create_access_key(store, SecretBox.for_data_dir(tmp_path), "revoked-later")
    with store.transaction() as tx:
        tx.revoke_access_key(key.access_key_id)
    log = RejectionLog(store, clock=Clock())
    log.record(rejection(0, key_id=key.access_key_id, error="UnrecognizedClientException"))
    log.record(rejection(1, key_id="AKIANOSUCHKEY0000000", error="UnrecognizedClientException"))
    assert [(r["key_id"], r["organization"]) for r in on_disk(store)] == [
        (key.access_key_id, "default"), ("AKIANOSUCHKEY0000000", None)]


def test_many_claimed_keys_from_one_address_fold_into_one_record_per_error(store):
    log = RejectionLog(store, clock=Clock())
    for n in range(rejections.MAX_KEYS_PER_SOURCE + 50):
        log.record(rejection(n, key_id=f"AKIA{n:016d}"))
    log.close_all()
    records = on_disk(store)
    folded = [r for r in records if r.get("folded")]
    assert len(records) == rejections.MAX_KEYS_PER_SOURCE + 2  # one record per key, then the folded first and its repeats
    assert [(r["key_id"], r["operation"], r["source"]) for r in folded] == [(None, None, "198.51.100.1")] * 2
    assert sum(r["count"] for r in records) == rejections.MAX_KEYS_PER_SOURCE + 50


def test_past_every_bound_all_addresses_share_one_record_per_error(store, monkeypatch):
    monkeypatch.setattr(rejections, "MAX_KEYS", 4)
    monkeypatch.setattr(rejections, "MAX_FOLDED_KEYS", 2)
    log = RejectionLog(store, clock=Clock())
    for n in range(100):
        log.record(rejection(n, source=f"2001:db8::{n:x}"))
    log.close_all()
    records = on_disk(store)
    assert len(records) <= 4 + 2 * 2 + 2  # exact keys, folded per address (first + repeats), one fold for all
    assert sum(r["count"] for r in records) == 100
    assert records[-1]["source"] is None and records[-1]["folded"]


def test_a_rejection_that_cannot_be_written_is_counted_for_when_the_window_closes(store, monkeypatch):
    log = RejectionLog(store, clock=Clock())

    def unavailable(tx, fields):
        raise OSError("disk full")

    monkeypatch.setattr(audit, "append", unavailable)
    with pytest.raises(OSError):
        log.record(rejection(0))
    monkeypatch.undo()
    log.close_all()
    assert [(r["request_id"], r["count"]) for r in on_disk(store)] == [("request-0", 1)]


# Over the wire: a real server, hand-signed requests.


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as running:
        running.client().create_collection(CollectionId="exists")
        yield running


def request_id(headers: dict) -> str:
    return next(v for k, v in headers.items() if k.lower() == "x-amzn-requestid")


def record_of(server, result) -> dict:
    wanted = request_id(result[1])
    return next(r for r in on_disk(server.facegate.store) if r.get("request_id") == wanted)


def claims(record: dict) -> tuple:
    return record["key_id"], record["organization"], record["operation"], record["error_type"], record["status"], record["count"]


def test_each_kind_of_pre_gate_rejection_is_audited_with_its_claims_and_never_its_body(server):
    key, store = server.new_key(name="claims"), server.facegate.store
    revoked = server.new_key(name="revoked")
    with store.transaction() as tx:
        tx.revoke_access_key(revoked.access_key_id)
    forged = NewAccessKey(key.access_key_id, "not-the-secret")
    stranger = NewAccessKey("AKIASTRANGERSTRANGER", "whatever")
    body = json.dumps({"CollectionId": MARKER}).encode()

    def post(k: NewAccessKey, operation: str, payload: bytes = body, **kw):
        return signed_post(server.endpoint, f"RekognitionService.{operation}", payload, k.access_key_id, k.secret_access_key, **kw)

    expected = [
        (post(forged, "DescribeCollection"), (key.access_key_id, "default", "DescribeCollection", "InvalidSignatureException", 400, 1)),
        (post(stranger, "DescribeCollection"), ("AKIASTRANGERSTRANGER", None, "DescribeCollection", "UnrecognizedClientException", 400, 1)),
        (post(revoked, "DescribeCollection"), (revoked.access_key_id, "default", "DescribeCollection", "UnrecognizedClientException", 400, 1)),
        (post(key, "DescribeCollection", b'{"CollectionId": "' + MARKER.encode() + b'"'),
         (key.access_key_id, "default", "DescribeCollection", "SerializationException", 400, 1)),
        (post(key, "ListFaces", json.dumps({"CollectionId": "exists", MARKER: 1}).encode()),
         (key.access_key_id, "default", "ListFaces", "InvalidParameterException", 400, 1)),
        (post(key, "MakeCoffee"), (key.access_key_id, "default", "MakeCoffee", "UnknownOperationException", 400, 1)),
        (post(key, "ListCollections", b"{}", after_signing={"X-Facegate-Case-Ref": MARKER}),
         (key.access_key_id, "default", "ListCollections", "IncompleteSignatureException", 400, 1)),
        (post(key, "DetectFaces", b"{}", after_signing={"Content-Length": str(9 * 1024 * 1024)}),
         (key.access_key_id, "default", "DetectFaces", "InvalidParameterException", 400, 1)),
        (raw_post(server.endpoint, {"X-Amz-Target": "RekognitionService.ListCollections", "Content-Type": JSON_1_1}, body),
         (None, None, "ListCollections", "MissingAuthenticationTokenException", 400, 1)),
    ]
    for result, claimed in expected:
        record = record_of(server, result)
        assert (result[0], result[2]["__type"]) == (record["status"], record["error_type"])
        assert claims(record) == claimed
        assert (record["source"], record["decision"]) == ("127.0.0.1", None)
    assert MARKER not in json.dumps(on_disk(store))


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/", 405), ("PUT", "/", 405), ("OPTIONS", "/", 405), ("DELETE", "/", 405),
    ("GET", "/nope", 404), ("POST", "/2016-06-27/collections", 404), ("POST", "/health", 405),
])
def test_other_paths_and_methods_get_an_aws_error_and_are_audited(server, method, path, status):
    probe = f"Probe{method}{path.replace('/', '-')}"  # a claimed operation of its own: a first rejection, on disk at once
    result = raw_request(server.endpoint, method, path, {"X-Amz-Target": f"RekognitionService.{probe}"})
    assert (result[0], result[2]["__type"]) == (status, "UnknownOperationException"), result
    assert "POST /" in result[2]["Message"]
    if status == 405:
        allowed = {k.lower(): v for k, v in result[1].items()}["allow"]
        assert set(allowed.split(", ")) == ({"POST"} if path == "/" else {"GET", "HEAD"})
    record = record_of(server, result)
    assert (record["operation"], record["error_type"], record["status"], record["source"], record["key_id"]) == (
        probe, "UnknownOperationException", status, "127.0.0.1", None)


def test_health_is_not_audited(server):
    with server.facegate.store.reader() as tx:
        before = audit.head(tx)
    assert raw_request(server.endpoint, "GET", "/health", {})[2] == {"status": "ok"}
    with server.facegate.store.reader() as tx:
        assert audit.head(tx) == before


def test_a_crash_before_the_gate_is_a_500_and_audited(server, monkeypatch):
    def crash(*_):
        raise RuntimeError("validator bug")

    monkeypatch.setattr("facegate.api.app.validate", crash)
    result = signed_post(server.endpoint, "RekognitionService.ListCollections", b"{}", server.key.access_key_id, server.key.secret_access_key)
    assert (result[0], result[2]["__type"]) == (500, "InternalServerError") and "bug" not in result[2]["Message"]
    assert claims(record_of(server, result)) == (server.key.access_key_id, "default", "ListCollections", "InternalServerError", 500, 1)


def test_a_crash_resolving_the_identity_is_a_500_and_audited(server, monkeypatch):
    def crash(*_):
        raise RuntimeError("identity bug")

    monkeypatch.setattr("facegate.governance.keys.identity_of", crash)
    result = signed_post(server.endpoint, "RekognitionService.DescribeCollection", b'{"CollectionId": "exists"}',
                         server.key.access_key_id, server.key.secret_access_key)
    assert (result[0], result[2]["__type"]) == (500, "InternalServerError")
    assert claims(record_of(server, result)) == (server.key.access_key_id, "default", "DescribeCollection", "InternalServerError", 500, 1)


def test_a_flood_of_bad_signatures_is_a_handful_of_records_counting_every_request(server, tmp_path):
    """300 forged requests from one key and address, 20 from another key, 10 through a proxy
    for another address: one record per kind on disk at once, their repeats at shutdown."""
    facegate = Facegate.open(tmp_path, engine=server.facegate.engine)
    try:
        key = create_access_key(facegate.store, facegate.secrets, "flooded")
        other = create_access_key(facegate.store, facegate.secrets, "also-flooded")
        body = json.dumps({"CollectionId": MARKER}).encode()

        def forged(endpoint: str, victim: NewAccessKey, proxy_for: str | None = None) -> int:
            headers = sign_headers(endpoint, {"X-Amz-Target": "RekognitionService.DescribeCollection", "Content-Type": JSON_1_1},
                                   body, victim.access_key_id, "not-the-secret")
            return raw_post(endpoint, {**headers, **({"X-Forwarded-For": proxy_for} if proxy_for else {})}, body)[0]

        with serving(facegate.app()) as endpoint:
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(lambda _: forged(endpoint, key), range(300)))
                statuses += pool.map(lambda _: forged(endpoint, other), range(20))
                statuses += pool.map(lambda _: forged(endpoint, key, "203.0.113.9"), range(10))
            assert statuses == [400] * 330
            assert [(r["key_id"], r["source"], r["count"]) for r in on_disk(facegate.store)] == [
                (key.access_key_id, "127.0.0.1", 1), (other.access_key_id, "127.0.0.1", 1), (key.access_key_id, "203.0.113.9", 1)]
        records = on_disk(facegate.store)  # the server has stopped: its open windows are closed
    finally:
        facegate.store.close()
    assert len(records) == 6
    totals: dict[tuple, int] = {}
    for record in records:
        assert (record["error_type"], record["operation"], record["decision"]) == ("InvalidSignatureException", "DescribeCollection", None)
        totals[record["key_id"], record["source"]] = totals.get((record["key_id"], record["source"]), 0) + record["count"]
    assert totals == {(key.access_key_id, "127.0.0.1"): 300, (other.access_key_id, "127.0.0.1"): 20, (key.access_key_id, "203.0.113.9"): 10}
    assert MARKER not in json.dumps(records)
    verified = subprocess.run([FACEGATE, "audit", "verify", "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
