"""How a node holds up as a collection grows: start-up, memory, search latency and recall at N faces.

The collection holds real **mates** and N synthetic **distractors**. Mates are LFW identities
enrolled over HTTP with IndexFaces (one photo each; this times ``index_faces_per_s``); the probe
is another photo of the same person. Distractors are unit descriptors clustered like real ones
(``index_bench.clustered_descriptors``), generated here and inserted through the store in bulk.

Everything over the wire is timed against ``facegate serve`` as a child process, with boto3 in
this process, one client, sequential: SearchFaces by id, SearchFacesByImage with the probes, and
DetectFaces on the same probes as the baseline of the same run (SearchFacesByImage = DetectFaces
+ embedding + search + audit). Start-up is launch to ``/health``, first on a database alone (the
index is built from it and the snapshot written) and then again (the snapshot is mapped).
Memory is the node's: the proportional set size (``Pss`` in ``/proc/<pid>/smaps_rollup``,
shared pages divided among the processes sharing them) summed over the server's processes,
after the searches have touched what they touch, less the same for a server on an empty
database, per face; with ``--workers 2`` the parent and both workers are summed.
``recall_at_1`` compares the index's nearest face with a float64 brute force over every stored
descriptor, for each probe's descriptor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config
from sqlalchemy import create_engine, text

from facegate.bench.index_bench import clustered_descriptors
from facegate.bench.local_server import free_port, start_serve_process, worker_pids
from facegate.engine.face_models import load_engine
from facegate.engine.image import decode_image
from facegate.engine.pipeline import FaceEngine
from facegate.governance.gate import DEFAULT_RETENTION_DAYS
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.governance.retention import enforce_retention
from facegate.server import INDEX_DIRECTORY
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.product_codes import APPROXIMATE_FROM
from facegate.store.records import FaceRecord
from facegate.store.secrets import MASTER_KEY_FILE, SecretBox

SEARCHES = 200
"""SearchFaces requests timed (one client, sequential), by the FaceIds of the enrolled mates:
an identification, which few faces match. (A synthetic face's whole cluster, about N/500 faces,
would match, and the time would go to writing thousands of matches, not to searching.)"""
STRICT = 99
"""The threshold sensitive purposes must ask for (the threshold-floors pack): SearchFaces is
timed at it too, since at 80 the time of a large collection's search goes more and more to the
synthetic faces it matches (on average about 145 of 10M, each read from the database and
written into the answer)."""
MATES = 40
"""Identities enrolled as mates, and probes searched with SearchFacesByImage."""
AGED = 20_000
"""Distractors inserted as ``AGED_DAYS`` old and then found past retention by a sweep run
beside the searches: how long requests wait behind the background work that deletes them."""
AGED_DAYS = 1000
"""Within the default retention (1095 days), so a node's own sweep keeps them until the bench
sweeps as of 100 days later, when they, and only they, are due."""


def fill(store: Store, collection_pk: int, count: int, seed: int, batch: int = 10_000, created_at: float | None = None) -> list[str]:
    """Insert ``count`` clustered unit descriptors into a collection (created now, or at
    ``created_at``); returns their face ids."""
    rng = np.random.default_rng(seed)
    face_ids: list[str] = []
    for start in range(0, count, batch):
        vectors = clustered_descriptors(rng, min(batch, count - start))
        records = [
            FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, None, (0.1, 0.1, 0.5, 0.5), 99.9, v,
                       "synthetic", "filler", time.time() if created_at is None else created_at)
            for v in vectors
        ]
        with store.transaction() as tx:
            tx.insert_faces(records)
        face_ids += [r.face_id for r in records]
    return face_ids


def client_for(endpoint: str, key: NewAccessKey) -> Any:
    return boto3.client(
        "rekognition", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}, read_timeout=300),
    )


def pss_bytes(pid: int) -> int:
    """The process's proportional set size: its private pages plus its share of shared ones."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss for {pid}")


def pss_by_file(pid: int, under: Path) -> dict[str, int]:
    """Pss (bytes) of the process's mappings of files under ``under``, by file name: how much of
    each snapshot plane the searches actually brought in."""
    out: dict[str, int] = {}
    name = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            name = fields[5] if len(fields) > 5 and fields[5].startswith(str(under)) else None
        elif name is not None and line.startswith("Pss:"):
            key = Path(name).name
            out[key] = out.get(key, 0) + int(fields[1]) * 1024
    return out


class ServeProcess:
    """``facegate serve`` as a child process: the node under test."""

    def __init__(self, data_dir: Path, workers: int = 1) -> None:
        port = free_port()
        start = time.perf_counter()
        self.process = start_serve_process(data_dir, port, workers, timeout=900)
        self.startup_s = time.perf_counter() - start
        self.endpoint = f"http://127.0.0.1:{port}"
        self.workers = workers

    def pss_bytes(self) -> int:
        pids = [self.process.pid] + (worker_pids(self.process.pid) if self.workers > 1 else [])
        return sum(pss_bytes(pid) for pid in pids)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=120)


def _timed(calls: list[Callable[[], Any]]) -> list[float]:
    seconds = []
    for call in calls:
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def percentiles(prefix: str, seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {f"{prefix}_p50_ms": float(np.percentile(ms, 50)), f"{prefix}_p99_ms": float(np.percentile(ms, 99))}


def mate_photos(faces_dir: Path, count: int) -> list[tuple[bytes, bytes]]:
    """(enrolled photo, probe photo) of ``count`` LFW identities with at least two photos."""
    people = sorted(p for p in (faces_dir / "lfw_erstrong").iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    pairs = []
    for person in people[:count]:
        first, second = sorted(person.glob("*.jpg"))[:2]
        pairs.append((first.read_bytes(), second.read_bytes()))
    return pairs


def recall_at_1(store: Store, collection_pk: int, probes: list[np.ndarray]) -> float:
    """Fraction of probes whose nearest face by the index is the float64 brute force's nearest,
    over every stored descriptor, streamed in batches so any size fits in memory."""
    matrix = np.stack(probes).astype(np.float64)
    best = np.full(len(probes), -np.inf)
    nearest: list[str] = [""] * len(probes)
    with store.snapshot() as tx:  # streamed: a server-side cursor on PostgreSQL lives in a transaction
        for batch in tx.face_vector_batches(store.index.dimension):
            rows = np.flatnonzero(batch.collection_pks == collection_pk)
            if not len(rows):
                continue
            dots = batch.vectors[rows].astype(np.float64) @ matrix.T
            top = np.argmax(dots, axis=0)
            for i, row in enumerate(top):
                if dots[row, i] > best[i]:
                    best[i], nearest[i] = dots[row, i], batch.face_ids[rows[row]]
    hits = 0
    for probe, exact in zip(probes, nearest):
        found = store.index.search(collection_pk, probe, 2.0, 1)
        hits += bool(found) and found[0].face_id == exact
    return hits / len(probes)


def searches_beside_a_snapshot_write(store: Store, collection_pk: int, probes: list[np.ndarray]) -> dict[str, float]:
    """Search latency (ms) from one thread, first for 3 s of nothing else, then while the store
    writes the whole index as a new snapshot and moves to it (the background work a node does
    after every 20,000 changes): p50, p99 and the worst search of each."""

    def timed_while(work: Callable[[], Any]) -> np.ndarray:
        seconds: list[float] = []
        stop = threading.Event()

        def search() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                store.index.search(collection_pk, probes[len(seconds) % len(probes)], 1.0, 10)
                seconds.append(time.perf_counter() - start)

        searcher = threading.Thread(target=search)
        searcher.start()
        time.sleep(0.5)
        work()
        time.sleep(2.0)  # the move to the new snapshot happens at the next poll
        stop.set()
        searcher.join()
        return np.array(seconds) * 1000

    idle, busy = timed_while(lambda: time.sleep(3.0)), timed_while(store.compact_index)
    return {"search_idle_p50_ms": float(np.percentile(idle, 50)), "search_idle_p99_ms": float(np.percentile(idle, 99)),
            "search_idle_max_ms": float(idle.max()), "search_beside_snapshot_write_p50_ms": float(np.percentile(busy, 50)),
            "search_beside_snapshot_write_p99_ms": float(np.percentile(busy, 99)),
            "search_beside_snapshot_write_max_ms": float(busy.max())}


def searches_beside_a_retention_sweep(search: Callable[[], Any], database_url: str) -> dict[str, float]:
    """SearchFaces over the wire, one after another, while another process's retention sweep
    (as ``facegate retention enforce`` runs it, 100 days from now) deletes the aged faces, in
    batches whose audit records take the same write lock as the searches' own: latency p50,
    p99 and the worst, with the sweep's duration, faces deleted, and how long its batches
    held the lock (the longest bounds what a search could have waited behind one)."""
    writer = open_store(database_url, load_index=False)  # as the CLI opens it: the sweep searches nothing
    done = threading.Event()
    outcome: dict[str, float] = {}
    held: list[float] = []

    def sweep() -> None:
        start = time.perf_counter()
        try:
            records = enforce_retention(writer, now=time.time() + (DEFAULT_RETENTION_DAYS - AGED_DAYS + 5) * 86_400,
                                        on_batch=lambda _faces, seconds: held.append(seconds))
            outcome["faces_deleted"] = sum(r["summary"]["faces_deleted"] for r in records)
        finally:
            outcome["seconds"] = time.perf_counter() - start
            done.set()

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    seconds = []
    while not done.is_set():
        start = time.perf_counter()
        search()
        seconds.append(time.perf_counter() - start)
    sweeper.join()
    writer.close()
    if "faces_deleted" not in outcome:
        raise RuntimeError("the retention sweep failed")
    timed = np.array(seconds) * 1000
    return {"search_faces_beside_retention_sweep_p50_ms": float(np.percentile(timed, 50)),
            "search_faces_beside_retention_sweep_p99_ms": float(np.percentile(timed, 99)),
            "search_faces_beside_retention_sweep_max_ms": float(timed.max()),
            "retention_sweep_s": outcome["seconds"], "retention_sweep_faces_deleted": outcome["faces_deleted"],
            "retention_batches": len(held), "retention_batch_held_p50_ms": float(np.percentile(held, 50) * 1000),
            "retention_batch_held_max_ms": float(max(held) * 1000)}


def _descriptor(engine: FaceEngine, photo: bytes) -> np.ndarray | None:
    """The descriptor of the photo's first detected face, as the server computes it."""
    image = decode_image(photo)
    faces = engine.detect(image, details=False)
    return engine.embed(image, faces[:1])[0] if faces else None


def run_scale_bench(faces: int, faces_dir: Path, workers_run: bool = True, database_url: str | None = None) -> dict[str, Any]:
    """Every figure at ``faces`` distractors, in one run: on SQLite in the data directory, or on
    the database at ``database_url`` (PostgreSQL), which the ``facegate serve`` children are
    pointed at too (the caller sets ``FACEGATE_DATABASE_URL``)."""
    pairs = mate_photos(faces_dir, MATES)
    engine = load_engine()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        url = database_url or sqlite_url(data_dir)
        writer = open_store(url, load_index=False)  # writes only: at 10M an index here took 12 GB
        key = create_access_key(writer, SecretBox.for_data_dir(data_dir), "bench")
        empty_workers, empty_workers_pss = (ServeProcess(data_dir, workers=2) if workers_run else None), 0
        if empty_workers is not None:
            client_for(empty_workers.endpoint, key).list_collections()
            empty_workers_pss = empty_workers.pss_bytes()
            empty_workers.stop()
        empty = ServeProcess(data_dir)
        try:
            client = client_for(empty.endpoint, key)
            client.create_collection(CollectionId="scale")
            client.detect_faces(Image={"Bytes": pairs[0][1]})  # warm the models
            mate_ids: list[str] = []
            index_seconds = _timed([lambda b=b: mate_ids.extend(
                r["Face"]["FaceId"] for r in client.index_faces(CollectionId="scale", Image={"Bytes": b}, MaxFaces=1)["FaceRecords"])
                for b, _ in pairs])
            client.search_faces_by_image(CollectionId="scale", Image={"Bytes": pairs[0][1]})
            empty_pss = empty.pss_bytes()  # with every model the node below will use loaded
        finally:
            empty.stop()
        with writer.reader() as tx:
            collection = tx.get_collection("default", "scale")
        assert collection is not None
        aged = min(AGED, faces // 10)
        start = time.perf_counter()
        fill(writer, collection.pk, aged, seed=faces + 1, created_at=time.time() - AGED_DAYS * 86_400)
        fill(writer, collection.pk, faces - aged, seed=faces)
        insert_seconds = time.perf_counter() - start
        writer.close()
        settle_seconds = settle_after_load(database_url) if database_url is not None else 0.0

        first = ServeProcess(data_dir)  # builds the index from the database and writes the snapshot
        first.stop()
        node = ServeProcess(data_dir)  # maps the snapshot
        try:
            client = client_for(node.endpoint, key)
            rng = np.random.default_rng(1)
            by_id = [mate_ids[i] for i in rng.integers(0, len(mate_ids), SEARCHES)]  # identifications: few faces match
            search = lambda f: client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=80)  # noqa: E731
            strict = lambda f: client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=STRICT)  # noqa: E731
            _timed([lambda f=f: search(f) for f in by_id[:20]])  # warm: pool, page cache, first catch-up
            search_seconds = _timed([lambda f=f: search(f) for f in by_id])
            strict_seconds = _timed([lambda f=f: strict(f) for f in by_id])
            matches = {threshold: float(np.mean([len(ask(f)["FaceMatches"]) for f in mate_ids]))
                       for threshold, ask in ((80, search), (STRICT, strict))}
            probes = [probe for _, probe in pairs]
            detect_seconds = _timed([lambda b=b: client.detect_faces(Image={"Bytes": b}) for b in probes])
            by_image_seconds = _timed([lambda b=b: client.search_faces_by_image(CollectionId="scale", Image={"Bytes": b},
                                                                                FaceMatchThreshold=80) for b in probes])
            node_pss = node.pss_bytes()
            planes = pss_by_file(node.process.pid, data_dir / INDEX_DIRECTORY)
            second = _second_node(data_dir, key, by_id, search) if database_url is not None else {}
        finally:
            node.stop()
        workers = _workers_node(data_dir, key, by_id, faces, empty_workers_pss) if workers_run else {}
        reader = open_store(url, index_dir=data_dir / INDEX_DIRECTORY, vector_search=False)
        try:
            descriptors = [d for d in map(lambda b: _descriptor(engine, b), probes) if d is not None]
            recall = recall_at_1(reader, collection.pk, descriptors)
            stalls = searches_beside_a_snapshot_write(reader, collection.pk, descriptors)
        finally:
            reader.close()
        # Last, so that no measurement above meets the snapshot a node writes after the deletions.
        sweeping = ServeProcess(data_dir)
        try:
            client = client_for(sweeping.endpoint, key)
            search_first = lambda: client.search_faces(CollectionId="scale", FaceId=by_id[0], FaceMatchThreshold=80)  # noqa: E731
            # Warmed as the node measured above was: a fresh node's and client's first requests (the
            # connection, the first reads of the snapshot) took up to 358 ms at 1M with no sweep beside them.
            _timed([search_first] * 20)
            sweep = searches_beside_a_retention_sweep(search_first, url)
        finally:
            sweeping.stop()
    return {
        "faces": faces,
        "mates": len(pairs),
        "backend": "sqlite" if database_url is None else "postgresql",
        "index": ("approximate (faiss 4-bit product-code fast scan, 1,024 candidates re-ranked exactly)" if faces >= APPROXIMATE_FROM
                  else "exact (int8 scan + float64 re-rank)") + ", memory-mapped snapshot",
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "startup_s": node.startup_s,
        "startup_first_s": first.startup_s,
        "startup_empty_s": empty.startup_s,
        "rss_bytes_per_face": (node_pss - empty_pss) / faces,
        "node_pss_bytes": node_pss,
        "index_planes_pss_bytes": planes,
        **workers,
        **second,
        **percentiles("search_faces", search_seconds),
        "search_faces_mean_matches": matches[80],
        **percentiles("search_faces_at_99", strict_seconds),
        "search_faces_at_99_mean_matches": matches[STRICT],
        **percentiles("search_faces_by_image", by_image_seconds),
        **percentiles("detect_faces", detect_seconds),
        "recall_at_1": recall,
        **stalls,
        **sweep,
        "index_faces_per_s": len(index_seconds) / sum(index_seconds),
        "store_insert_faces_per_s": faces / insert_seconds,
        "vacuum_after_load_s": settle_seconds,
        "note": "mates: LFW photos enrolled with IndexFaces; distractors: clustered synthetic descriptors inserted through "
                "the store; latencies over HTTP with boto3 against `facegate serve`, one client; memory = summed Pss of "
                "the server's processes less an empty server's, per face",
    }


def settle_after_load(database_url: str) -> float:
    """Runs the maintenance a bulk load leaves PostgreSQL owing (VACUUM ANALYZE of the faces,
    then a checkpoint) now, as an operator would after a load, and returns its seconds.
    Otherwise autovacuum starts that pass on its own, after a nap of up to a minute, and it
    may or may not overlap the timed searches; SearchFaces at 1M took 15.8-18.4 ms at p50 in
    four runs and 23.6 ms in a fifth, and this takes one cause of that spread out of the figures."""
    start = time.perf_counter()
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")  # VACUUM runs outside a transaction
    try:
        with engine.connect() as connection:
            connection.execute(text("VACUUM (ANALYZE) faces"))
            connection.execute(text("CHECKPOINT"))
    finally:
        engine.dispose()
    return time.perf_counter() - start


def _second_node(data_dir: Path, key: NewAccessKey, face_ids: list[str], search: Callable[[str], Any]) -> dict[str, float]:
    """Another node on the same database, as on another host: its own data directory (with
    the first's master key, as a deployment copies it), so it builds its own index snapshot
    from the database at first start. Its SearchFaces latency, and the share of searches it
    answers exactly as the first node does (same faces, same similarities, same order)."""
    second_dir = data_dir / "second-node"
    second_dir.mkdir()
    shutil.copy2(data_dir / MASTER_KEY_FILE, second_dir / MASTER_KEY_FILE)
    first_start = ServeProcess(second_dir)
    first_start.stop()
    node = ServeProcess(second_dir)
    try:
        client = client_for(node.endpoint, key)
        seconds = _timed([lambda f=f: client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=80) for f in face_ids])
        matches = lambda answer: [(m["Face"]["FaceId"], m["Similarity"]) for m in answer["FaceMatches"]]  # noqa: E731
        same = [matches(search(f)) == matches(client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=80))
                for f in face_ids[:MATES]]
        return {"second_node_startup_first_s": first_start.startup_s, "second_node_startup_s": node.startup_s,
                **percentiles("second_node_search_faces", seconds), "nodes_agree": sum(same) / len(same)}
    finally:
        node.stop()


def _workers_node(data_dir: Path, key: NewAccessKey, face_ids: list[str], faces: int, empty_pss: int) -> dict[str, float]:
    """``--workers 2`` on the same data: start-up, and the node's memory once both workers have
    searched, less that of an empty two-worker node, per face."""
    node = ServeProcess(data_dir, workers=2)
    try:
        client = client_for(node.endpoint, key)
        seconds = _timed([lambda f=f: client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=80)
                          for f in face_ids[:100]])
        pss = node.pss_bytes()
        return {"workers_2_startup_s": node.startup_s, "workers_2_node_pss_bytes": pss,
                "workers_2_rss_bytes_per_face": (pss - empty_pss) / faces,
                **percentiles("workers_2_search_faces", seconds)}
    finally:
        node.stop()
