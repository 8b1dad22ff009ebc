"""Group commit of audit records: concurrent requests' records share one transaction (one
fsync), each is committed before its caller is answered, and a failed batch keeps none.

The store-level tests hold the write lock with an open transaction (as a write in progress
does) while callers append, so their records are waiting together when it is released.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from facegate.governance import audit
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.group_commit import GroupCommit, GroupCommitFailed
from facegate.store.transaction import Transaction
from tests.support.photos import lfw_photo
from tests.support.postgres import fresh_database
from tests.support.server import RunningServer, running_server

CALLERS = 8
QUEUE_PAUSE_S = 0.5
"""How long the write lock is held while callers queue: not a speed assertion, only time for
the threads to reach the queue (one is enough for a shared transaction; all usually do)."""


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return fresh_database(request.getfixturevalue("postgres_server_url"))


@contextmanager
def counting_commits(store: Store) -> Iterator[list[int]]:
    """Counts the transactions the store commits while the block runs."""
    commits = [0]

    def count(_connection: Any) -> None:
        commits[0] += 1

    event.listen(store.engine, "commit", count)
    try:
        yield commits
    finally:
        event.remove(store.engine, "commit", count)


def append_behind_a_write(store: Store, fields: list[dict[str, Any]]) -> list[dict[str, Any] | BaseException]:
    """Each of ``fields`` appended by its own thread while another transaction holds the
    write lock; what each caller got back, in the order of ``fields``."""
    outcomes: list[dict[str, Any] | BaseException | None] = [None] * len(fields)
    started = threading.Barrier(len(fields) + 1)

    def caller(i: int) -> None:
        started.wait()
        try:
            outcomes[i] = store.append_audit_grouped(fields[i])
        except BaseException as exc:  # the outcome under test
            outcomes[i] = exc

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(fields))]
    with store.transaction():
        for thread in threads:
            thread.start()
        started.wait()
        time.sleep(QUEUE_PAUSE_S)
    for thread in threads:
        thread.join()
    assert all(o is not None for o in outcomes)
    return outcomes  # type: ignore[return-value]


def stored(store: Store) -> list[dict[str, Any]]:
    with store.reader() as tx:
        return audit.stored_records(tx)


def verified(store: Store) -> audit.Verdict:
    with store.reader() as tx:
        return audit.verify_log(tx)


def test_records_waiting_together_commit_in_one_transaction_and_chain_in_order(any_database_url):
    store = open_store(any_database_url)
    try:
        before = len(stored(store))
        with counting_commits(store) as commits:
            outcomes = append_behind_a_write(store, [{"operation": f"Op{i}", "status": 200} for i in range(CALLERS)])
        records = stored(store)[before:]
        assert sorted(r["operation"] for r in records) == sorted(f"Op{i}" for i in range(CALLERS))
        assert [o["hash"] for o in sorted(outcomes, key=lambda o: o["seq"])] == [r["hash"] for r in records]  # type: ignore[index]
        assert commits[0] < 1 + CALLERS  # the holding transaction, then fewer than one per record
        assert verified(store).ok
    finally:
        store.close()


def test_a_failed_batch_fails_every_caller_in_it_and_keeps_none_of_its_records(tmp_path):
    """A trigger refuses one record, so its batch's transaction fails: each caller either got
    its stored record back or an exception, never a record that was not kept."""
    store = open_store(sqlite_url(tmp_path))
    try:
        with store.transaction() as tx:
            tx.connection.exec_driver_sql(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON audit_log WHEN NEW.operation = 'Poison' "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        before = stored(store)
        fields = [{"operation": "Poison" if i == 0 else f"Op{i}", "status": 200} for i in range(CALLERS)]
        outcomes = append_behind_a_write(store, fields)
        kept = {r["operation"] for r in stored(store)[len(before):]}
        failed = {f["operation"] for f, o in zip(fields, outcomes) if isinstance(o, BaseException)}
        assert "Poison" in failed and len(failed) > 1  # the others in its transaction failed with it
        assert kept == {f["operation"] for f in fields} - failed
        for outcome in outcomes:  # the leader got the database's error, the others it as the cause
            if isinstance(outcome, GroupCommitFailed):
                outcome = outcome.__cause__
            assert not isinstance(outcome, BaseException) or "injected failure" in str(outcome)
        assert verified(store).ok
        appended = store.append_audit_grouped({"operation": "After", "status": 200})
        assert appended["seq"] == len(before) + len(kept) + 1 and verified(store).ok
    finally:
        store.close()


def test_a_record_whose_transaction_cannot_begin_fails_and_is_not_written_by_a_later_batch(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    attempts = [0]

    @contextmanager
    def locked_out_once() -> Iterator[Transaction]:
        attempts[0] += 1
        if attempts[0] == 1:
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))
        with store.transaction() as tx:
            yield tx

    group = GroupCommit(locked_out_once)
    try:
        with pytest.raises(OperationalError):
            group.append({"operation": "Refused", "status": 200})
        appended = group.append({"operation": "Next", "status": 200})
        assert [r["operation"] for r in stored(store)][-1:] == ["Next"] and appended["seq"] == len(stored(store))
        assert "Refused" not in {r["operation"] for r in stored(store)}
    finally:
        store.close()


def test_a_record_that_is_not_json_fails_only_its_own_caller(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    try:
        fields: list[dict[str, Any]] = [{"operation": f"Op{i}", "status": 200} for i in range(CALLERS)]
        fields[3]["summary"] = {"not json": object()}
        outcomes = append_behind_a_write(store, fields)
        assert [isinstance(o, BaseException) for o in outcomes] == [i == 3 for i in range(CALLERS)]
        assert {r["operation"] for r in stored(store)} >= {f"Op{i}" for i in range(CALLERS) if i != 3}
        assert verified(store).ok
    finally:
        store.close()


# Over the wire: a real server, boto3 clients in threads.


@dataclass
class Scene:
    """A server with one collection, "people", holding one face (Colin Powell's first photo)."""

    server: RunningServer
    face_id: str


@pytest.fixture
def scene(tmp_path, faces_dir):
    with running_server(tmp_path) as running:
        client = running.client()
        client.create_collection(CollectionId="people")
        photo = lfw_photo(faces_dir).read_bytes()
        face_id = client.index_faces(CollectionId="people", Image={"Bytes": photo})["FaceRecords"][0]["Face"]["FaceId"]
        yield Scene(running, face_id)


def request_id_of(call: Callable[[], dict[str, Any]]) -> tuple[str, str | None]:
    """The request id the server answered with, and the error code (None on success)."""
    try:
        return call()["ResponseMetadata"]["RequestId"], None
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["RequestId"], exc.response["Error"]["Code"]


def test_concurrent_requests_each_leave_one_record_in_fewer_transactions_than_records(scene, faces_dir):
    """Searches, listings, failures and a write each from many clients at once: every
    request is on record exactly once, the chain holds, and non-write records shared
    transactions (one transaction per record before group commit)."""
    store = scene.server.facegate.store
    clients = [scene.server.client() for _ in range(8)]
    photos = [lfw_photo(faces_dir, number=n) for n in range(2, 2 + len(clients))]

    def requests(n: int) -> list[tuple[str, str | None]]:
        client, photo = clients[n], photos[n].read_bytes()  # a new image each, so each IndexFaces writes
        calls: list[Callable[[], dict[str, Any]]] = [
            lambda: client.search_faces(CollectionId="people", FaceId=scene.face_id),
            lambda: client.list_faces(CollectionId="people"),
            lambda: client.describe_collection(CollectionId="missing"),  # ResourceNotFoundException
            lambda: client.list_collections(),
        ]
        write = request_id_of(lambda: client.index_faces(CollectionId="people", Image={"Bytes": photo}))
        return [write] + [request_id_of(call) for _ in range(4) for call in calls]

    before = len(stored(store))
    with counting_commits(store) as commits, ThreadPoolExecutor(len(clients)) as pool:
        answered = [r for batch in pool.map(requests, range(len(clients))) for r in batch]
    records = stored(store)[before:]
    assert sorted(r["request_id"] for r in records) == sorted(request_id for request_id, _ in answered)
    assert {e for _, e in answered} == {None, "ResourceNotFoundException"}
    assert len([r for r in records if r["operation"] == "IndexFaces" and r["summary"]["faces_indexed"] == 1]) == len(clients)
    assert commits[0] < len(records)
    assert verified(store).ok


def test_a_search_whose_record_cannot_be_committed_returns_no_results(scene):
    """The record of an identification is durable before its results are given out."""
    with scene.server.facegate.store.transaction() as tx:
        tx.connection.exec_driver_sql(
            "CREATE TRIGGER refuse_searches BEFORE INSERT ON audit_log WHEN NEW.operation = 'SearchFaces' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    with pytest.raises(ClientError) as refused:
        scene.server.client().search_faces(CollectionId="people", FaceId=scene.face_id)
    assert refused.value.response["Error"]["Code"] == "InternalServerError"
    assert "FaceMatches" not in refused.value.response
    assert verified(scene.server.facegate.store).ok


def test_a_writes_record_still_commits_inside_the_write(scene, faces_dir):
    """A write whose record is refused is rolled back with it; its failure is recorded apart."""
    with scene.server.facegate.store.transaction() as tx:
        tx.connection.exec_driver_sql(
            "CREATE TRIGGER refuse_indexing BEFORE INSERT ON audit_log WHEN NEW.operation = 'IndexFaces' "
            "AND json_extract(NEW.record, '$.status') = 200 BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    client = scene.server.client()
    before = client.list_faces(CollectionId="people")["Faces"]
    photo = lfw_photo(faces_dir, number=2).read_bytes()  # not yet indexed: indexing it is a write
    request_id, error = request_id_of(lambda: client.index_faces(CollectionId="people", Image={"Bytes": photo}))
    assert error == "InternalServerError"
    assert client.list_faces(CollectionId="people")["Faces"] == before
    mine = [r for r in stored(scene.server.facegate.store) if r.get("request_id") == request_id]
    assert [(r["status"], r["error_type"]) for r in mine] == [(500, "InternalServerError")]
