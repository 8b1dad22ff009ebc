"""How the server holds up as a collection grows: start-up, memory and search latency at N faces.

The N faces are synthetic unit descriptors inserted through the store (only the index's size
matters to start-up, memory and the scan), generated here at bench time. SearchFaces by id is
timed over HTTP with boto3 against the server in the bench's process, together with the
database connections each request opens (counted on the store's engine). Start-up and resident
memory are measured on ``facegate serve`` as a child process on the same data directory: the
time until ``/health`` answers, and its RSS (``/proc``) less that of a server on an empty
database, per face. With ``--workers 2`` the parent's RSS is reported too: it holds no index.
``open_store_s`` is the time to open the store (migrate check and index load) in-process.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config
from sqlalchemy import event

from facegate.bench.local_server import free_port, serving, start_serve_process, worker_pids
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.server import Facegate
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.records import FaceRecord
from facegate.store.secrets import SecretBox

SEARCHES = 200
"""SearchFaces requests timed (one client, sequential)."""


def fill(store: Store, collection_pk: int, count: int, seed: int, batch: int = 10_000) -> list[str]:
    """Insert ``count`` random unit descriptors into a collection; returns their face ids."""
    rng = np.random.default_rng(seed)
    face_ids: list[str] = []
    for start in range(0, count, batch):
        vectors = rng.standard_normal((min(batch, count - start), store.index.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, None, (0.1, 0.1, 0.5, 0.5), 99.9, v,
                       "synthetic", "filler", time.time())
            for v in vectors
        ]
        with store.transaction() as tx:
            tx.insert_faces(records)
        face_ids += [r.face_id for r in records]
    return face_ids


def _client(endpoint: str, key: NewAccessKey) -> Any:
    return boto3.client(
        "rekognition", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _serve_start(data_dir: Path, workers: int) -> dict[str, float]:
    """Seconds from launching ``facegate serve`` until ``/health`` answers, and the RSS of
    its processes (bytes): the serving process, or the parent and each worker."""
    port = free_port()
    start = time.perf_counter()
    process = start_serve_process(data_dir, port, workers)
    seconds = time.perf_counter() - start
    try:
        if workers == 1:
            return {"startup_s": seconds, "rss_bytes": _rss_bytes(process.pid)}
        return {"startup_s": seconds, "parent_rss_bytes": _rss_bytes(process.pid),
                "worker_rss_bytes": max(_rss_bytes(pid) for pid in worker_pids(process.pid))}
    finally:
        process.terminate()
        process.wait(timeout=60)


def _search_faces(data_dir: Path, key: NewAccessKey, face_ids: list[str]) -> dict[str, float]:
    """SearchFaces by id latency, and database connections opened per request."""
    facegate = Facegate.open(data_dir, database_url=sqlite_url(data_dir))
    connects = [0]
    event.listen(facegate.store.engine, "connect", lambda *_: connects.__setitem__(0, connects[0] + 1))
    try:
        with serving(facegate.app()) as endpoint:
            client = _client(endpoint, key)
            rng = np.random.default_rng(1)
            probes = [face_ids[i] for i in rng.integers(0, len(face_ids), SEARCHES)]
            for face_id in probes[:10]:  # warm: pool, caches, first catch-up
                client.search_faces(CollectionId="scale", FaceId=face_id, FaceMatchThreshold=80)
            before, seconds = connects[0], []
            for face_id in probes:
                t = time.perf_counter()
                client.search_faces(CollectionId="scale", FaceId=face_id, FaceMatchThreshold=80)
                seconds.append(time.perf_counter() - t)
            opened = connects[0] - before
    finally:
        facegate.store.close()
    ms = np.array(seconds) * 1000
    return {"search_faces_p50_ms": float(np.percentile(ms, 50)), "search_faces_p99_ms": float(np.percentile(ms, 99)),
            "connections_per_search_faces": opened / len(probes)}


def run_scale_bench(faces: int) -> dict[str, Any]:
    """Every figure at ``faces`` faces on SQLite, in one run."""
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        store = open_store(sqlite_url(data_dir))
        key = create_access_key(store, SecretBox.for_data_dir(data_dir), "bench")
        empty = _serve_start(data_dir, 1)
        from facegate.engine.face_models import load_engine

        engine = load_engine()
        with store.transaction() as tx:
            collection = tx.create_collection("default", "scale", "arn:aws:rekognition:us-east-1:000000000000:collection/scale",
                                              engine.model_version)
        start = time.perf_counter()
        face_ids = fill(store, collection.pk, faces, seed=faces)
        insert_seconds = time.perf_counter() - start
        store.close()
        start = time.perf_counter()
        open_store(sqlite_url(data_dir)).close()
        load_seconds = time.perf_counter() - start
        full = _serve_start(data_dir, 1)
        workers = _serve_start(data_dir, 2)
        search = _search_faces(data_dir, key, face_ids)
    return {
        "faces": faces,
        "backend": "sqlite",
        "index": "exact",
        "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS", "unset"),
        "startup_s": full["startup_s"],
        "startup_empty_s": empty["startup_s"],
        "open_store_s": load_seconds,
        "rss_bytes_per_face": (full["rss_bytes"] - empty["rss_bytes"]) / faces,
        "rss_bytes": full["rss_bytes"],
        "workers_2_parent_rss_bytes": workers["parent_rss_bytes"],
        "workers_2_worker_rss_bytes": workers["worker_rss_bytes"],
        "workers_2_startup_s": workers["startup_s"],
        **search,
        "store_insert_faces_per_s": faces / insert_seconds,
        "note": "synthetic unit descriptors inserted through the store; SearchFaces over HTTP with boto3, one client, "
                "server in the bench's process; start-up = `facegate serve` launch to /health",
    }
