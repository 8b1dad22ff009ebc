"""The retention sweep deletes in small audited batches, found through an index on age."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import replace

import numpy as np
import pytest
from sqlalchemy import inspect

from facegate.governance import audit
from facegate.governance import retention
from facegate.governance.identity import create_organization
from facegate.store.database import open_store, sqlite_url
from facegate.store.migrations import MIGRATIONS, migrate
from facegate.store.records import CollectionRecord, FaceRecord
from facegate.store.transaction import Transaction

DAY = 86_400.0


def _faces(collection_pk: int, created_at: list[float]) -> list[FaceRecord]:
    rng = np.random.default_rng(7)
    return [
        FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, None, (0.1, 0.1, 0.5, 0.5), 99.0,
                   rng.standard_normal(128).astype(np.float32), "test-model", uuid.uuid4().hex, when)
        for when in created_at
    ]


def _archive(tx: Transaction) -> CollectionRecord:
    """A collection that keeps faces for 30 days."""
    collection = tx.create_collection("default", "archive", "arn:aws:rekognition:us-east-1:000000000000:collection/archive", "m")
    tx.set_tags(collection.pk, {"facegate:retention-days": "30"})
    return collection


def test_a_sweep_larger_than_a_batch_deletes_every_due_face_in_batches_and_keeps_the_rest(tmp_path, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZES", (3, 3))
    store = open_store(sqlite_url(tmp_path))
    now = 1_800_000_000.0
    with store.transaction() as tx:
        collection = _archive(tx)
        due = _faces(collection.pk, [now - 40 * DAY - i for i in range(7)])
        kept = _faces(collection.pk, [now - 10 * DAY, now])
        tx.insert_faces(due + kept)

    records = retention.enforce_retention(store, now=now)

    assert [r["summary"]["faces_deleted"] for r in records] == [3, 3, 1]
    assert sorted(f for r in records for f in r["summary"]["face_ids"]) == sorted(f.face_id for f in due)
    with store.reader() as tx:
        assert {f.face_id for f in tx.list_faces(collection.pk, None, 100)} == {f.face_id for f in kept}
        assert audit.verify(audit.stored_records(tx), audit.head(tx)).ok
    assert store.index_disagreements() == []
    store.close()


@pytest.mark.parametrize(("batch_seconds", "sizes"), [(0.0, [1] * 12), (float("inf"), [1, 2, 4, 4, 1])])
def test_a_sweep_starts_with_the_smallest_batch_and_grows_only_while_batches_are_quick(tmp_path, monkeypatch, batch_seconds, sizes):
    monkeypatch.setattr(retention, "BATCH_SIZES", (1, 4))
    monkeypatch.setattr(retention, "BATCH_SECONDS", batch_seconds)
    store = open_store(sqlite_url(tmp_path))
    now = 1_800_000_000.0
    with store.transaction() as tx:
        collection = _archive(tx)
        tx.insert_faces(_faces(collection.pk, [now - 40 * DAY - i for i in range(12)]))

    heard: list[tuple[int, float]] = []
    records = retention.enforce_retention(store, now=now, on_batch=lambda faces, held: heard.append((faces, held)))

    assert [r["summary"]["faces_deleted"] for r in records] == sizes
    assert [faces for faces, _ in heard] == sizes and all(held > 0 for _, held in heard)
    with store.reader() as tx:
        assert tx.list_faces(collection.pk, None, 100) == []
    store.close()


@pytest.mark.parametrize(("size", "held_seconds", "following"), [
    (64, 0.051, 32), (16, 1.0, 16),  # too long: halved, never below the smallest
    (128, 0.03, 128),  # between half the budget and the budget: kept
    (32, 0.01, 64), (250, 0.0, 250),  # quick: doubled, never past the largest
])
def test_the_next_batch_follows_how_long_the_last_held_the_lock(size, held_seconds, following):
    assert retention.BATCH_SIZES == (16, 250) and retention.BATCH_SECONDS == 0.05
    assert retention._next_batch_size(size, held_seconds) == following


def test_a_database_from_before_v5_gains_the_index_on_face_age(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    with store.engine.begin() as connection:
        connection.exec_driver_sql("DROP INDEX ix_faces_created")
        connection.exec_driver_sql("UPDATE schema_version SET version = 4")
    with store.engine.begin() as connection:
        assert migrate(connection) == len(MIGRATIONS)
        assert "ix_faces_created" in {i["name"] for i in inspect(connection).get_indexes("faces")}
    store.close()


def test_a_face_of_a_user_is_deleted_when_due_the_user_stays_and_each_face_is_logged_once(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    now = 1_800_000_000.0
    with store.transaction() as tx:
        collection = _archive(tx)
        due, kept = _faces(collection.pk, [now - 40 * DAY, now - 41 * DAY]), _faces(collection.pk, [now])
        tx.insert_faces(due + kept)
        tx.create_user(collection.pk, "alice")
        tx.set_face_user(collection.pk, [due[0].face_id, kept[0].face_id], "alice")
    with store.reader() as tx:
        logged_before = len(tx.index_changes_after(0))

    retention.enforce_retention(store, now=now)

    with store.reader() as tx:
        # One change per face deleted, and nothing else: every serving process replays the
        # sweep's log before its next search, so it is kept to what a search must see.
        logged = sorted((c.kind, c.face_id) for _, c in tx.index_changes_after(0)[logged_before:])
        assert logged == sorted(("remove", f.face_id) for f in due)
        assert tx.get_user(collection.pk, "alice") is not None
        assert {f.face_id: f.user_id for f in tx.list_faces(collection.pk, None, 100)} == {kept[0].face_id: "alice"}
    assert store.index_disagreements() == []
    store.close()


def test_a_write_waiting_for_the_lock_gets_it_between_two_batches(tmp_path, monkeypatch):
    """Without a pause the sweep took the lock straight back, and a queued request's audit
    record waited for every batch after the one it queued behind."""
    monkeypatch.setattr(retention, "BATCH_SIZES", (2, 2))
    monkeypatch.setattr(retention, "BATCH_PAUSE_SECONDS", 0.5)  # ample for the waiter to be scheduled
    store = open_store(sqlite_url(tmp_path))
    now = 1_800_000_000.0
    with store.transaction() as tx:
        collection = _archive(tx)
        tx.insert_faces(_faces(collection.pk, [now - 40 * DAY - i for i in range(6)]))
    queued: list[dict] = []
    waiter = threading.Thread(target=lambda: queued.append(store.append_audit_grouped(audit.administrative("test:Queued", {}))))
    delete_faces = Transaction.delete_faces

    def first_batch_queues_a_write(tx: Transaction, collection_pk: int, face_ids: list[str]) -> None:
        if not waiter.is_alive() and not queued:
            waiter.start()
            time.sleep(0.2)  # the waiter is now blocked on the lock this batch holds
        delete_faces(tx, collection_pk, face_ids)

    monkeypatch.setattr(Transaction, "delete_faces", first_batch_queues_a_write)
    records = retention.enforce_retention(store, now=now)
    waiter.join()

    assert [r["seq"] for r in records[:2]] == [records[0]["seq"], queued[0]["seq"] + 1]
    store.close()


def test_revoking_a_consent_deletes_its_faces_in_every_collection_of_the_organisation_and_only_those(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    create_organization(store, "acme", "commercial")
    retention.add_consent(store, "acme", "consent-7", "employee 7", expires_at=1_900_000_000.0)
    with store.transaction() as tx:
        staff = tx.create_collection("acme", "staff", "arn:aws:rekognition:us-east-1:000000000000:collection/staff", "m")
        visitors = tx.create_collection("acme", "visitors", "arn:aws:rekognition:us-east-1:000000000000:collection/visitors", "m")
        covered = [replace(f, external_image_id="consent-7") for f in _faces(staff.pk, [1.0, 2.0]) + _faces(visitors.pk, [3.0])]
        others = [replace(f, external_image_id="consent-8") for f in _faces(staff.pk, [4.0])]
        tx.insert_faces(covered + others)

    record = retention.revoke_consent(store, "acme", "consent-7")

    assert sorted(record["summary"]["face_ids"]) == sorted(f.face_id for f in covered)
    with store.reader() as tx:
        assert [f.face_id for f in tx.list_faces(staff.pk, None, 10)] == [others[0].face_id]
        assert tx.list_faces(visitors.pk, None, 10) == []
        assert audit.verify(audit.stored_records(tx), audit.head(tx)).ok
    assert store.index_disagreements() == []
    store.close()
