"""The store on both backends, embedded SQLite and a real PostgreSQL server.

The whole boto3 API suite also runs on both (test_api_collections.py); this covers a
restart rebuilding the index from PostgreSQL, and writers in separate processes (a CLI
command beside the server, or two servers) keeping one audit chain.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from facegate.governance import audit
from facegate.server import Facegate
from sqlalchemy import create_engine, insert

from facegate.store import schema
from facegate.store.database import open_store, sqlite_url
from facegate.store.migrations import MIGRATIONS, current_version, migrate
from tests.support.photos import lfw_photo
from tests.support.postgres import fresh_database
from tests.support.server import running_server


@pytest.fixture
def database_url(postgres_server_url):
    return fresh_database(postgres_server_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return fresh_database(request.getfixturevalue("postgres_server_url"))


def test_a_restarted_server_rebuilds_its_index_from_postgresql(database_url, tmp_path, faces_dir):
    with running_server(tmp_path / "data", database_url) as server:
        client = server.client()
        client.create_collection(CollectionId="people")
        indexed = client.index_faces(CollectionId="people", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})
        face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    restarted = Facegate.open(tmp_path / "data", database_url=database_url)
    try:
        assert restarted.store.engine.dialect.name == "postgresql"
        assert restarted.store.index_disagreements() == []
        with restarted.store.reader() as tx:
            collection = tx.get_collection("default", "people")
        assert collection is not None and restarted.store.index.vector(collection.pk, face_id) is not None
    finally:
        restarted.store.close()


def test_writers_in_separate_processes_keep_one_audit_chain(any_database_url):
    """Two stores stand for two processes: their in-process locks cannot see each other, so
    only the database's own lock keeps the chain's appends in one order. Without it, both
    read the same head and the second append violates the sequence's unique key."""
    stores = [open_store(any_database_url), open_store(any_database_url)]
    try:
        def append_many(store_number: int) -> None:
            for n in range(40):
                with stores[store_number].transaction() as tx:
                    audit.append(tx, {"operation": "Test", "writer": store_number, "n": n})

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(append_many, [0, 1]))
        with stores[0].reader() as tx:
            verdict = audit.verify(audit.stored_records(tx), audit.head(tx))
        assert verdict.ok, verdict.problem
        assert verdict.records == 80
    finally:
        for store in stores:
            store.close()


def test_two_servers_on_one_database_see_each_others_writes(any_database_url, tmp_path, faces_dir):
    """Two servers (replicas behind a load balancer, or a server and a CLI) share one
    database; each keeps its own in-memory index, which the index log keeps current."""
    url = any_database_url
    with running_server(tmp_path / "data", url) as first, running_server(tmp_path / "data", url) as second:
        a, b = first.client(), second.client()
        a.create_collection(CollectionId="shared")
        powell = a.index_faces(CollectionId="shared", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})["FaceRecords"][0]["Face"]
        probe = {"Bytes": lfw_photo(faces_dir, number=2).read_bytes()}
        found = b.search_faces_by_image(CollectionId="shared", Image=probe, FaceMatchThreshold=90)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in found] == [powell["FaceId"]]

        b.create_user(CollectionId="shared", UserId="colin")
        b.associate_faces(CollectionId="shared", UserId="colin", FaceIds=[powell["FaceId"]])
        users = a.search_users_by_image(CollectionId="shared", Image=probe, UserMatchThreshold=90)["UserMatches"]
        assert [u["User"]["UserId"] for u in users] == ["colin"]

        b.disassociate_faces(CollectionId="shared", UserId="colin", FaceIds=[powell["FaceId"]])
        b.delete_faces(CollectionId="shared", FaceIds=[powell["FaceId"]])
        assert a.search_faces_by_image(CollectionId="shared", Image=probe, FaceMatchThreshold=0)["FaceMatches"] == []
        assert first.facegate.store.index_disagreements() == [] and second.facegate.store.index_disagreements() == []


def test_a_database_from_an_older_release_is_migrated_in_place(any_database_url):
    engine = create_engine(any_database_url)
    with engine.begin() as connection:
        assert migrate(connection, target=2) == 2  # as the release before the index log left it
        connection.execute(insert(schema.collections).values(
            owner="default", collection_id="kept", arn="arn:aws:rekognition:us-east-1:000000000000:collection/kept",
            face_model_version="v", created_at=0.0))
    engine.dispose()
    store = open_store(any_database_url)
    try:
        with store.reader() as tx:
            assert current_version(tx.connection) == len(MIGRATIONS)
            assert tx.get_collection("default", "kept") is not None
            assert tx.index_log_position()[0] == 0
    finally:
        store.close()


def test_a_server_that_missed_pruned_log_entries_rebuilds_its_index(any_database_url, tmp_path, faces_dir):
    with running_server(tmp_path / "data", any_database_url) as first, running_server(tmp_path / "data", any_database_url) as second:
        a, b = first.client(), second.client()
        a.create_collection(CollectionId="pruned")
        face_id = a.index_faces(CollectionId="pruned", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})["FaceRecords"][0]["Face"]["FaceId"]
        assert first.facegate.store.prune_index_log(keep_seconds=0) >= 1  # before the second server read the log
        probe = {"Bytes": lfw_photo(faces_dir, number=2).read_bytes()}
        found = b.search_faces_by_image(CollectionId="pruned", Image=probe)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in found] == [face_id]
        assert second.facegate.store.index_disagreements() == []
