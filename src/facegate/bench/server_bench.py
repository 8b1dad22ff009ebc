"""Server latency and throughput over HTTP, with boto3 as the client.

SearchFacesByImage is timed on collections of 10,000 and 100,000 faces. The filler faces
are random unit vectors inserted through the store (only the index size matters to the
search); the probes are real photos. The baseline, measured in the same run on the same
probes, is DetectFaces: the engine's share of a request, so the ratio shows what the
search itself adds. Throughput is measured against ``facegate serve --workers 1`` and
``--workers 2`` in a child process, the second's ratio to the first in the same run.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config

from facegate.bench.local_server import free_port, serving, start_serve_process
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.server import Facegate
from facegate.store.database import open_store, sqlite_url
from facegate.store.secrets import SecretBox
from facegate.store.records import FaceRecord


CONCURRENT_CLIENTS = 4
"""Clients for the throughput runs: enough that every worker process has work queued."""


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def _fill(facegate: Facegate, collection_pk: int, count: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for start in range(0, count, 5000):
        vectors = rng.standard_normal((min(5000, count - start), facegate.store.index.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            FaceRecord(str(uuid.uuid4()), collection_pk, str(uuid.uuid4()), None, None, (0.1, 0.1, 0.5, 0.5), 99.9, v, "synthetic", "filler", time.time())
            for v in vectors
        ]
        with facegate.store.transaction() as tx:
            tx.insert_faces(records)


def _time(call: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def _throughput(clients: list[Any], call: Callable[[Any, bytes], Any], probes: list[bytes]) -> float:
    """Requests per second with one thread per client, each sending every probe in turn."""
    start = time.perf_counter()
    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(lambda c: [call(c, b) for b in probes], clients))
    return len(clients) * len(probes) / (time.perf_counter() - start)


def _client(endpoint: str, key: NewAccessKey) -> Any:
    return boto3.client(
        "rekognition", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )


def _serve_process_throughput(probe_bytes: list[bytes], workers: int) -> float:
    """SearchFacesByImage requests/s from CONCURRENT_CLIENTS clients against
    ``facegate serve --workers N`` in its own process (clients do not share its GIL)."""
    with tempfile.TemporaryDirectory() as data_dir:
        store = open_store(sqlite_url(Path(data_dir)))
        key = create_access_key(store, SecretBox.for_data_dir(Path(data_dir)), "bench")
        store.close()
        port = free_port()
        server = start_serve_process(Path(data_dir), port, workers)
        try:
            clients = [_client(f"http://127.0.0.1:{port}", key) for _ in range(CONCURRENT_CLIENTS)]
            clients[0].create_collection(CollectionId="workers")
            for b in probe_bytes:
                clients[0].index_faces(CollectionId="workers", Image={"Bytes": b})

            def search(c: Any, b: bytes) -> Any:
                return c.search_faces_by_image(CollectionId="workers", Image={"Bytes": b}, FaceMatchThreshold=99)

            _throughput(clients, search, probe_bytes[:4])  # every worker warm
            return _throughput(clients, search, probe_bytes)
        finally:
            server.terminate()
            server.wait(timeout=60)


def run_server_bench(faces_dir: Path, sizes: tuple[int, ...] = (10_000, 100_000), probes: int = 40) -> dict[str, Any]:
    lfw = faces_dir / "lfw_erstrong"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)
    probe_bytes = [sorted(p.glob("*.jpg"))[1].read_bytes() for p in people[:probes]]
    index_bytes = [sorted(p.glob("*.jpg"))[0].read_bytes() for p in people[: probes * 2]]
    with tempfile.TemporaryDirectory() as data_dir:
        facegate = Facegate.open(Path(data_dir), database_url=sqlite_url(Path(data_dir)))
        key = create_access_key(facegate.store, facegate.secrets, "bench")
        with serving(facegate.app()) as endpoint:
            client = _client(endpoint, key)
            client.detect_faces(Image={"Bytes": probe_bytes[0]})  # warm the models
            detect = [t for b in probe_bytes for t in _time(lambda: client.detect_faces(Image={"Bytes": b}), 1)]

            client.create_collection(CollectionId="indexing")
            start = time.perf_counter()
            indexed = sum(
                len(client.index_faces(CollectionId="indexing", Image={"Bytes": b})["FaceRecords"]) for b in index_bytes
            )
            index_seconds = time.perf_counter() - start

            searches: dict[str, Any] = {}
            for size in sizes:
                name = f"search-{size}"
                client.create_collection(CollectionId=name)
                with facegate.store.reader() as tx:
                    collection = tx.get_collection("default", name)
                assert collection is not None
                _fill(facegate, collection.pk, size - probes, seed=size)
                for b in probe_bytes:
                    client.index_faces(CollectionId=name, Image={"Bytes": b}, ExternalImageId="probe")
                timings = [
                    t for b in probe_bytes
                    for t in _time(lambda: client.search_faces_by_image(CollectionId=name, Image={"Bytes": b}, FaceMatchThreshold=99), 1)
                ]
                searches[str(size)] = {"faces": size, **_percentiles(timings)}
        facegate.store.close()
    by_workers = {str(n): _serve_process_throughput(probe_bytes, n) for n in (1, 2)}
    baseline = _percentiles(detect)
    return {
        "probes": len(probe_bytes),
        "baseline_detect_faces": baseline,
        "search_faces_by_image": searches,
        "search_over_detect_p50_ratio": {k: v["p50_ms"] / baseline["p50_ms"] for k, v in searches.items()},
        "index_faces": {"images": len(index_bytes), "faces": indexed, "faces_per_second": indexed / index_seconds},
        "serve_workers_search_requests_per_second": {
            "clients": CONCURRENT_CLIENTS, "by_workers": by_workers, "ratio_2_to_1": by_workers["2"] / by_workers["1"],
        },
        "note": "latencies: one client, sequential requests, server in the bench's process; throughput: "
                "`facegate serve --workers N` as a child process, one thread per client; over HTTP with boto3 and SigV4",
    }
