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
from facegate.store.database import open_store, sqlite_url
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
