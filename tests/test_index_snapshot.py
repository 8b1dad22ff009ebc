"""The node's index snapshot: mapped instead of rebuilt, shared, recognised, compacted.

Stores on one data directory stand for the processes of one node (``serve --workers``); they
share nothing but the database and the index directory, as processes do. Results are checked
against a float64 brute force over what the database holds.
"""

from __future__ import annotations

import json
import threading
from contextlib import closing
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from facegate.store import database, index_snapshot, transaction
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.face_index import CollectionIndex, FaceIndex, IndexChange
from facegate.store.records import FaceRecord


def _open(data_dir: Path) -> Store:
    return open_store(sqlite_url(data_dir), index_dir=data_dir / "index")


def _collection(store: Store, name: str = "people") -> int:
    with store.transaction() as tx:
        return tx.create_collection("default", name, f"arn:aws:rekognition:us-east-1:000000000000:collection/{name}", "test").pk


def _faces(store: Store, pk: int, rng: np.random.Generator, count: int, user_id: str | None = None) -> list[FaceRecord]:
    vectors = rng.standard_normal((count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [FaceRecord(str(uuid.uuid4()), pk, str(uuid.uuid4()), None, user_id, (0.1, 0.1, 0.5, 0.5), 99.0, v, "test",
                          "fingerprint", time.time()) for v in vectors]
    with store.transaction() as tx:
        tx.insert_faces(records)
    return records


def _brute_force(store: Store, pk: int, probe: np.ndarray, max_distance: float, limit: int | None) -> list[str]:
    with store.reader() as tx:
        stored = [(face_id, vector) for cpk, face_id, vector, _ in tx.all_face_vectors() if cpk == pk]
    distances = [(float(np.sqrt(max(2 - 2 * float(v.astype(np.float64) @ probe.astype(np.float64)), 0.0))), f) for f, v in stored]
    return [f for d, f in sorted(distances) if d <= max_distance][:limit]


def _base_count(store: Store, pk: int) -> int:
    base = store.index.collection(pk).base
    return 0 if base is None else base.rows.count


def _no_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("the index was rebuilt from the database")

    monkeypatch.setattr(transaction.Transaction, "face_vector_batches", refuse)


def test_a_reopened_store_maps_its_snapshot_instead_of_rebuilding(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    writer = open_store(sqlite_url(tmp_path))  # no index directory: like a CLI command
    pk = _collection(writer)
    _faces(writer, pk, rng, 300)
    writer.close()
    _open(tmp_path).close()  # builds from the database once, and writes the snapshot
    _no_rebuild(monkeypatch)
    with closing(_open(tmp_path)) as reopened:
        assert reopened.index.collection(pk).base is not None
        assert reopened.index.size(pk) == 300
        assert reopened.index_disagreements() == []


def test_a_store_closed_with_changes_leaves_them_in_a_new_snapshot(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    store = _open(tmp_path)
    pk = _collection(store)
    _faces(store, pk, rng, 30)
    store.close()
    with closing(_open(tmp_path)) as reopened:
        assert reopened.index.collection(pk).base.rows.count == 30


def test_changes_after_the_snapshot_are_replayed_from_the_log(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    store = _open(tmp_path)
    pk = _collection(store)
    kept = _faces(store, pk, rng, 200)
    writer = open_store(sqlite_url(tmp_path))  # a CLI command: no index directory, writes only
    added = _faces(writer, pk, rng, 20, user_id="alice")
    with writer.transaction() as tx:
        tx.delete_faces(pk, [kept[0].face_id, added[0].face_id])
        tx.set_face_user(pk, [kept[1].face_id], "bob")
    writer.close()
    store.close()
    _no_rebuild(monkeypatch)
    with closing(_open(tmp_path)) as reopened:
        assert reopened.index_disagreements() == []
        probe = added[1].embedding
        hits = reopened.index.search(pk, probe, 1.2, 5)
        assert [h.face_id for h in hits] == _brute_force(reopened, pk, probe, 1.2, 5)
        assert hits[0].user_id == "alice"
        assert reopened.index.vector(pk, kept[0].face_id) is None


def test_a_snapshot_of_another_database_is_not_used(tmp_path):
    rng = np.random.default_rng(3)
    first = _open(tmp_path / "a")
    _faces(first, _collection(first), rng, 50)
    first.close()
    other_dir = tmp_path / "b"
    other = open_store(sqlite_url(other_dir))
    pk = _collection(other)
    _faces(other, pk, rng, 70)
    other.close()
    # The second database, opened with the first one's snapshot beside it.
    with closing(open_store(sqlite_url(other_dir), index_dir=tmp_path / "a" / "index")) as store:
        assert store.index_disagreements() == []
        assert store.index.size(pk) == 70


def test_a_snapshot_in_an_earlier_format_is_rebuilt_not_misread(tmp_path):
    """A node upgraded from format 1 (bfloat16 halves) finds a snapshot whose arrays this
    version cannot read: it rebuilds from the database and publishes one of its own."""
    rng = np.random.default_rng(4)
    store = _open(tmp_path)
    pk = _collection(store)
    _faces(store, pk, rng, 40)
    store.close()
    index_dir = tmp_path / "index"
    old = index_dir / (index_dir / "CURRENT").read_text().strip()
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))
    for plane in ("codes", "scales", "vectors"):
        (old / f"{plane}.npy").unlink()
    with closing(_open(tmp_path)) as reopened:
        assert reopened.index_disagreements() == []
        assert reopened.index.size(pk) == 40
    current = json.loads((index_dir / (index_dir / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert current["format"] == index_snapshot.FORMAT


def test_processes_of_a_node_share_one_snapshot_and_see_each_others_writes(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    first = _open(tmp_path)
    pk = _collection(first)
    _faces(first, pk, rng, 100)
    assert first.compact_index() is not None
    _no_rebuild(monkeypatch)
    second = _open(tmp_path)
    try:
        assert second.index.collection(pk).base is not None
        record = _faces(first, pk, rng, 1)[0]
        assert [h.face_id for h in second.index.search(pk, record.embedding, 0.01, 1)] == [record.face_id]
    finally:
        first.close()
        second.close()


def test_enough_changes_publish_a_new_snapshot_that_every_process_switches_to(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "COMPACT_MIN_ROWS", 40)
    rng = np.random.default_rng(5)
    first, second = _open(tmp_path), None
    try:
        pk = _collection(first)
        initial = _faces(first, pk, rng, 100)
        second = _open(tmp_path)
        with first.transaction() as tx:
            tx.delete_faces(pk, [r.face_id for r in initial[:10]])
        _faces(first, pk, rng, 40)
        first.index  # catches up, sees 50 rows outside the snapshot, compacts in the background
        deadline = time.monotonic() + 30
        while (_base_count(first, pk), _base_count(second, pk)) != (130, 130) and time.monotonic() < deadline:
            time.sleep(0.05)  # the other process moves over at its next poll, with no request needed
        assert _base_count(first, pk) == 130  # only live faces, all in the new snapshot
        assert _base_count(second, pk) == 130
        assert len(list((tmp_path / "index").glob("snapshot-*"))) == 1
        for store in (first, second):
            assert store.index_disagreements() == []
            probe = initial[50].embedding
            assert [h.face_id for h in store.index.search(pk, probe, 1.3, 7)] == _brute_force(store, pk, probe, 1.3, 7)
    finally:
        first.close()
        if second is not None:
            second.close()


def test_searches_do_not_wait_for_the_writer(tmp_path):
    """A search runs while the writer holds the index's lock (a long replay, a snapshot's copy)."""
    rng = np.random.default_rng(6)
    index = FaceIndex(128)
    vectors = rng.standard_normal((500, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index.apply(IndexChange("add", 1, f"face-{i}", vectors[i]) for i in range(500))
    found: list[int] = []
    with index.lock:
        searcher = threading.Thread(target=lambda: found.append(len(index.search(1, vectors[7], 2.0, 3))))
        searcher.start()
        searcher.join(timeout=10)
    assert found == [3]


def test_searches_beside_a_writer_see_whole_faces_only():
    """Concurrent adds, removals and regrowth never show a search a half-written row: every
    hit is a face that was added, at its exact distance."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((4000, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = FaceIndex(128)
    errors: list[str] = []
    done = threading.Event()

    def write() -> None:
        for start in range(0, 4000, 50):
            index.apply([IndexChange("add", 1, f"face-{i}", vectors[i]) for i in range(start, start + 50)]
                        + [IndexChange("remove", 1, f"face-{i}") for i in range(start - 50, start, 7) if i >= 0])
        done.set()

    def search() -> None:
        while not done.is_set():
            probe = vectors[int(rng.integers(0, 4000))]
            for hit in index.search(1, probe, 2.0, 20):
                exact = float(np.sqrt(max(2 - 2 * float(vectors[int(hit.face_id[5:])].astype(np.float64) @ probe.astype(np.float64)), 0)))
                if abs(hit.distance - exact) > 1e-9:
                    errors.append(f"{hit.face_id}: {hit.distance} != {exact}")

    threads = [threading.Thread(target=write), threading.Thread(target=search), threading.Thread(target=search)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    removed = {i for start in range(50, 4000, 50) for i in range(start - 50, start, 7)}
    assert index.size(1) == 4000 - len(removed)


def test_ties_are_broken_by_face_id_wherever_the_faces_sit():
    vector = np.zeros(128, np.float32)
    vector[0] = 1.0
    index = CollectionIndex(128)
    for face_id in ("c", "a", "b"):
        index.add(face_id, vector, None)
    assert [n.face_id for n in index.search(vector, 0.5, None, False)] == ["a", "b", "c"]


def test_the_index_log_is_pruned_in_short_transactions(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "INDEX_LOG_PRUNE_BATCH", 3)
    with closing(open_store(sqlite_url(tmp_path))) as store:
        pk = _collection(store)
        _faces(store, pk, np.random.default_rng(9), 10)
        commits: list[int] = []
        monkeypatch.setattr(transaction.Transaction, "prune_index_log",
                            _counting(transaction.Transaction.prune_index_log, commits))
        assert store.prune_index_log(keep_seconds=0) == 10
        assert commits == [3, 3, 3, 1]
        with store.reader() as tx:
            assert tx.index_log_position() == (0, tx.index_log_pruned_through()) and tx.index_log_pruned_through() > 0


def _counting(prune, deleted: list[int]):
    def counted(self, before: float, limit: int) -> int:
        deleted.append(prune(self, before, limit))
        return deleted[-1]

    return counted


def test_a_snapshot_far_behind_the_log_is_rebuilt_in_bulk_not_replayed(tmp_path, monkeypatch):
    monkeypatch.setattr(database, "COMPACT_MIN_ROWS", 5)
    rng = np.random.default_rng(10)
    store = _open(tmp_path)
    pk = _collection(store)
    _faces(store, pk, rng, 10)
    store.close()  # leaves a snapshot of 10 faces
    writer = open_store(sqlite_url(tmp_path))  # a bulk load by a CLI command while the server is down
    _faces(writer, pk, rng, 30)
    writer.close()
    loads: list[int] = []
    bulk = transaction.Transaction.face_vector_batches

    def counted(self, dimension):
        loads.append(dimension)
        return bulk(self, dimension)

    monkeypatch.setattr(transaction.Transaction, "face_vector_batches", counted)
    with closing(_open(tmp_path)) as reopened:
        assert loads == [128]
        assert reopened.index.collection(pk).base.rows.count == 40
        assert reopened.index_disagreements() == []


def test_a_snapshot_behind_the_current_one_is_not_published_and_positions_are_read_from_the_manifest(tmp_path, monkeypatch):
    """Learning the current snapshot's log position opens nothing but its manifest (``open``
    would read every block of product codes, 320 MB at 10M faces)."""
    index = FaceIndex(4)
    index.collection(1).extend(["a", "b"], np.eye(4, dtype=np.float32)[:2], [None, None])
    snapshots = index_snapshot.IndexSnapshots(tmp_path)
    assert snapshots.write(index, index_snapshot.LogMark(5)) is not None

    def no_open(self: index_snapshot.IndexSnapshots) -> None:
        raise AssertionError("the whole snapshot was opened to read its position")

    monkeypatch.setattr(index_snapshot.IndexSnapshots, "open", no_open)
    with snapshots.locked(exclusive=False):
        assert snapshots.current_mark() == index_snapshot.LogMark(5)
    assert snapshots.write(index, index_snapshot.LogMark(3)) is None
    assert snapshots.write(index, index_snapshot.LogMark(7)) is not None
    with snapshots.locked(exclusive=False):
        assert snapshots.current_mark() == index_snapshot.LogMark(7)


def test_a_snapshot_is_written_through_file_writes_never_through_a_writable_mapping(tmp_path, monkeypatch):
    """Storing into a mapping of a file waits, GIL held, whenever the kernel holds back a
    process dirtying pages, and every search of the process waits with it; ``write`` waits
    without the GIL. The snapshot still maps back to the same index."""
    rng = np.random.default_rng(12)
    store = _open(tmp_path)
    try:
        pk = _collection(store)
        records = _faces(store, pk, rng, 400)
        mapped_for_writing: list[str] = []
        open_memmap, memmap = np.lib.format.open_memmap, np.memmap

        def no_write_mapping(filename, mode="r+", *args, **kwargs):
            if mode != "r":
                mapped_for_writing.append(str(filename))
            return open_memmap(filename, mode, *args, **kwargs)

        class ReadOnlyMemmap(memmap):
            def __new__(cls, filename, dtype=np.uint8, mode="r+", *args, **kwargs):
                if mode not in ("r", "c"):
                    mapped_for_writing.append(str(filename))
                return memmap.__new__(memmap, filename, dtype, mode, *args, **kwargs)

        monkeypatch.setattr(np.lib.format, "open_memmap", no_write_mapping)
        monkeypatch.setattr(np, "memmap", ReadOnlyMemmap)
        assert store.compact_index() is not None
        assert mapped_for_writing == []
    finally:
        store.close()
    monkeypatch.undo()
    _no_rebuild(monkeypatch)
    with closing(_open(tmp_path)) as reopened:
        assert reopened.index_disagreements() == []
        probe = records[7].embedding
        assert [n.face_id for n in reopened.index.search(pk, probe, 1.2, 5)] == _brute_force(reopened, pk, probe, 1.2, 5)


def test_a_plane_written_short_is_refused(tmp_path):
    plane = index_snapshot._PlaneWriter(tmp_path / "short.npy", np.float32, (3, 2))
    plane.append(np.zeros((2, 2), np.float32))
    with pytest.raises(RuntimeError, match="2 rows written, 3 declared"):
        plane.close()
