"""The store's request path and start-up at scale, on SQLite and a real PostgreSQL server.

Pooled connections and the "anything new?" check before replaying the index log must keep
the guarantee that every process sees every committed write at its next index access; the
bulk load must build the same index as the database holds; a store that only migrates
and manages keys (the parent of ``serve --workers``) must not hold an index at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from facegate.cli.data_dir import existing_data_dir
from facegate.bench.local_server import free_port, start_serve_process, worker_pids
from facegate.bench.scale_bench import fill, recall_at_1
from facegate.store import transaction
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.records import FaceRecord
from tests.support.postgres import fresh_database
from tests.support.server import running_server


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return fresh_database(request.getfixturevalue("postgres_server_url"))


def _collection(store: Store, name: str) -> int:
    with store.transaction() as tx:
        return tx.create_collection("default", name, f"arn:aws:rekognition:us-east-1:000000000000:collection/{name}", "test").pk


def _face(collection_pk: int, rng: np.random.Generator, user_id: str | None = None) -> FaceRecord:
    vector = rng.standard_normal(128).astype(np.float32)
    return FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, user_id, (0.1, 0.1, 0.5, 0.5), 99.0,
                      vector / np.linalg.norm(vector), "test", "fingerprint", time.time())


def _counting_connections(store: Store) -> list[int]:
    opened = [0]
    event.listen(store.engine, "connect", lambda *_: opened.__setitem__(0, opened[0] + 1))
    return opened


def test_searches_reuse_pooled_connections(any_database_url):
    store = open_store(any_database_url)
    try:
        pk = _collection(store, "pooled")
        fill(store, pk, 50, seed=1)
        probe = store.index.snapshot()[pk].popitem()[1][0]
        opened = _counting_connections(store)
        for _ in range(20):
            assert store.index.search(pk, probe, max_distance=0.1)
        assert opened[0] == 0
    finally:
        store.close()


def test_a_search_request_asks_the_database_once_whether_the_index_changed(any_database_url, tmp_path, monkeypatch):
    """SearchFaces reads the probe's vector and its neighbours from the index as the request
    first brought it current: one "anything new?" round trip, not one per index access."""
    with running_server(tmp_path / "data", any_database_url) as server:
        client = server.client()
        client.create_collection(CollectionId="lean")
        with server.facegate.store.reader() as tx:
            collection = tx.get_collection("default", "lean")
        assert collection is not None
        face_ids = fill(server.facegate.store, collection.pk, 30, seed=2)
        client.search_faces(CollectionId="lean", FaceId=face_ids[0])  # loads the index
        checks: list[int] = []
        position = transaction.Transaction.index_log_position
        monkeypatch.setattr(transaction.Transaction, "index_log_position", lambda tx: checks.append(1) or position(tx))
        matches = client.search_faces(CollectionId="lean", FaceId=face_ids[1], FaceMatchThreshold=0)["FaceMatches"]
        assert len(matches) == 29 and face_ids[1] not in {m["Face"]["FaceId"] for m in matches}
        assert len(checks) == 1


def test_reads_on_postgresql_run_without_a_transaction_around_them(postgres_server_url):
    """Each statement of a reader is its own transaction (no BEGIN and ROLLBACK round trips):
    a statement's transaction then starts with the statement itself."""
    store = open_store(fresh_database(postgres_server_url), load_index=False)
    try:
        with store.reader() as tx:
            tx.connection.execute(text("SELECT 1"))
            time.sleep(0.01)
            assert tx.connection.execute(text("SELECT now() = statement_timestamp()")).scalar_one() is True
        with store.transaction() as tx:  # writes still run in one transaction
            tx.connection.execute(text("SELECT 1"))
            time.sleep(0.01)
            assert tx.connection.execute(text("SELECT now() = statement_timestamp()")).scalar_one() is False
    finally:
        store.close()


def test_the_scale_benchmarks_recall_streams_every_face_on_both_backends(any_database_url):
    """``bench scale``'s brute force reads every stored face through a server-side cursor on
    PostgreSQL; the exact index's nearest face is the brute force's for every probe."""
    store = open_store(any_database_url)
    try:
        pk = _collection(store, "recall")
        fill(store, pk, 300, seed=4)
        rng = np.random.default_rng(4)
        stored = [v for v, _ in store.index.snapshot()[pk].values()][:10]
        probes = [v + 0.05 * rng.standard_normal(128).astype(np.float32) for v in stored]
        assert recall_at_1(store, pk, [p / np.linalg.norm(p) for p in probes]) == 1.0
    finally:
        store.close()


def test_every_committed_change_from_another_process_is_seen_at_the_next_search(any_database_url):
    """Two stores stand for two processes. The reader's index is current before each step,
    so each change is found only through the cheap check, never a first load."""
    reader, writer = open_store(any_database_url), open_store(any_database_url)
    try:
        pk = _collection(writer, "shared")
        rng = np.random.default_rng(2)
        face = _face(pk, rng)
        assert reader.index.size(pk) == 0
        with writer.transaction() as tx:
            tx.insert_faces([face])
        assert reader.index.vector(pk, face.face_id) is not None
        with writer.transaction() as tx:
            tx.create_user(pk, "ana")
            tx.set_face_user(pk, [face.face_id], "ana")
        assert [n.user_id for n in reader.index.search(pk, face.embedding, 0.1)] == ["ana"]
        with writer.transaction() as tx:
            tx.delete_faces(pk, [face.face_id])
        assert reader.index.vector(pk, face.face_id) is None
        with writer.transaction() as tx:
            tx.insert_faces([face])
        writer.prune_index_log(keep_seconds=0)  # the reader missed an entry that no longer exists
        assert reader.index.vector(pk, face.face_id) is not None
        assert reader.index_disagreements() == []
    finally:
        reader.close()
        writer.close()


def test_a_bulk_loaded_index_equals_the_database(any_database_url, monkeypatch):
    """Faces of several collections interleaved across batches (7 rows each here), with
    users and deletions, load into the same index that replaying their changes built."""
    monkeypatch.setattr(transaction, "FACE_VECTOR_BATCH", 7)
    store = open_store(any_database_url)
    try:
        pks = [_collection(store, name) for name in ("one", "two", "three")]
        rng = np.random.default_rng(3)
        faces = [_face(pks[i % 3], rng, user_id=None) for i in range(60)]
        with store.transaction() as tx:
            tx.create_user(pks[1], "bo")
            tx.insert_faces(faces)
            tx.set_face_user(pks[1], [f.face_id for f in faces if f.collection_pk == pks[1]][:5], "bo")
            tx.delete_faces(pks[2], [f.face_id for f in faces if f.collection_pk == pks[2]][:4])
        replayed = store.index
        reopened = open_store(any_database_url)
        try:
            assert reopened.index_disagreements() == []
            assert [reopened.index.size(pk) for pk in pks] == [20, 20, 16]
            for face in faces[::5]:
                pk = face.collection_pk
                assert reopened.index.search(pk, face.embedding, 1.0) == replayed.search(pk, face.embedding, 1.0)
        finally:
            reopened.close()
    finally:
        store.close()


def test_a_store_opened_without_its_index_reads_no_faces_until_searched(any_database_url):
    filled = open_store(any_database_url)
    pk = _collection(filled, "held")
    fill(filled, pk, 30, seed=4)
    filled.close()
    store = open_store(any_database_url, load_index=False)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: statements.append(sql))
    try:
        with store.transaction() as tx:  # what the parent of --workers does: keys, settings
            tx.set_setting("probe", "1")
        assert not [s for s in statements if "FROM faces" in s]
        assert store.index.size(pk) == 30  # loaded on first use
        assert store.index_disagreements() == []
    finally:
        store.close()


def test_a_cli_command_that_does_not_search_reads_no_faces(tmp_path):
    filled = open_store(sqlite_url(tmp_path))
    fill(filled, _collection(filled, "held"), 30, seed=5)
    filled.close()
    statements: list[str] = []

    def record(_c, _cur, sql, *_):  # type: ignore[no-untyped-def]
        statements.append(sql)

    event.listen(Engine, "before_cursor_execute", record)  # every engine, from the moment it opens
    try:
        store, _ = existing_data_dir(tmp_path)
        with store.reader() as tx:  # what `facegate keys list` reads
            tx.count_access_keys()
        store.close()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert statements and not [s for s in statements if "FROM faces" in s]


_OPENBLAS_THREADS = """
import ctypes, glob, os, sys
sys.argv = ["facegate", *sys.argv[1:]]
import facegate.cli.main
import numpy
libraries = glob.glob(os.path.join(os.path.dirname(numpy.__file__) + ".libs", "*scipy_openblas*"))
print(ctypes.CDLL(libraries[0]).scipy_openblas_get_num_threads64_() if libraries else 0)
"""


def _openblas_threads(*argv: str, env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-c", _OPENBLAS_THREADS, *argv], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS uses one thread anyway on one core")
def test_serve_uses_one_blas_thread_unless_the_operator_chose():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if _openblas_threads("evaluate", "--help", env=env) == 0:
        pytest.skip("this numpy does not bundle scipy-openblas")
    assert _openblas_threads("serve", "--help", env=env) == 1
    assert _openblas_threads("serve", "--help", env={**env, "OPENBLAS_NUM_THREADS": "2"}) == 2
    assert _openblas_threads("evaluate", "--help", env=env) > 1  # other commands keep the default


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


def _parent_rss_and_worker_environment(data_dir: Path) -> tuple[int, list[str]]:
    """The RSS of `serve --workers 2`'s parent once it serves, and its workers' environments."""
    process = start_serve_process(data_dir, free_port(), workers=2)
    try:
        environments = [Path(f"/proc/{pid}/environ").read_bytes().decode() for pid in worker_pids(process.pid)]
        return _rss_bytes(process.pid), environments
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_parent_of_workers_holds_no_index_and_workers_get_one_blas_thread(tmp_path, monkeypatch):
    """100,000 faces take about 70 MB in an index; the parent's memory must not grow with them."""
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    data_dir = tmp_path / "data"
    empty_rss, environments = _parent_rss_and_worker_environment(data_dir)
    assert len(environments) == 2 and all("\0OPENBLAS_NUM_THREADS=1\0" in f"\0{e}" for e in environments)
    store = open_store(sqlite_url(data_dir))
    fill(store, _collection(store, "many"), 100_000, seed=5)
    store.close()
    full_rss, _ = _parent_rss_and_worker_environment(data_dir)
    assert full_rss - empty_rss < 100_000 * 128 * 4 // 4
