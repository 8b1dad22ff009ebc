"""Sustained load: many concurrent boto3 clients against ``facegate serve --workers 2``,
then a check that nothing acknowledged was lost and nothing unacknowledged was kept.

Each client is a thread with its own boto3 client (its own connection) that, until the
time is up, picks IndexFaces, SearchFacesByImage, DetectFaces, ListFaces or DeleteFaces
by ``MIX`` on real LFW photos, in one shared collection. It deletes only faces it indexed
itself, so what should be listed afterwards is known exactly. The server is a child
process on a fresh data directory, as an operator runs it.

Afterwards: every acknowledged and not deleted face is listed, no acknowledged deletion
is listed, and no listed face is one that no client was told about (each IndexFaces
carries a unique ExternalImageId, so a face committed by a request that errored is named).
The audit log must hold one record per request the bench key sent; records of the
pre-gate rejection log stand for ``count`` requests each.
"""

from __future__ import annotations

import os
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError

from facegate.bench.local_server import free_port, start_serve_process
from facegate.governance import audit
from facegate.governance.keys import NewAccessKey, create_access_key
from facegate.store.database import open_store, sqlite_url
from facegate.store.secrets import SecretBox

WORKERS = 2
COLLECTION = "load"
MIX = {"IndexFaces": 3, "SearchFacesByImage": 3, "DetectFaces": 2, "ListFaces": 1, "DeleteFaces": 1}
"""Relative frequency of each operation: enrolment and search dominate, as in a photo library."""

PEOPLE = 200
"""LFW people with at least two photos: the first is indexed, the second searched for."""

Progress = Callable[[float, int, int], None]
"""Called about once a second with (seconds elapsed, requests answered, errors)."""


@dataclass
class _Tally:
    """What every client observed, shared between their threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in MIX})
    errors: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            if error is None:
                self.latencies[operation].append(seconds)
            else:
                self.errors[f"{operation}: {error}"] += 1


@dataclass
class _Ledger:
    """One client's faces: what it was told was indexed or deleted, and what it cannot know."""

    indexed: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    uncertain: set[str] = field(default_factory=set)  # a DeleteFaces that errored
    failed_index_ids: set[str] = field(default_factory=set)  # ExternalImageIds of IndexFaces that errored

    def deletable(self) -> list[str]:
        return sorted(self.indexed - self.deleted - self.uncertain)


def _client(endpoint: str, key: NewAccessKey) -> Any:
    # A session per client: boto3's default session is not safe to create clients from in many threads.
    return boto3.session.Session().client(
        "rekognition", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=key.access_key_id, aws_secret_access_key=key.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=300, connect_timeout=10),
    )


def _error_name(exc: Exception) -> str:
    return exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__


def _one_client(number: int, rekognition: Any, photos: list[tuple[bytes, bytes]], deadline: float,
                tally: _Tally, ledger: _Ledger) -> None:
    """Send requests drawn from MIX until ``deadline`` (time.monotonic())."""
    rng = random.Random(number)
    operations, weights = list(MIX), list(MIX.values())
    n = 0
    while time.monotonic() < deadline:
        n += 1
        operation = rng.choices(operations, weights)[0]
        if operation == "DeleteFaces" and not ledger.deletable():
            operation = "IndexFaces"
        indexed_photo, probe = photos[rng.randrange(len(photos))]
        external_id = f"client{number}-{n}"
        victim = rng.choice(ledger.deletable()) if operation == "DeleteFaces" else ""
        start = time.perf_counter()
        try:
            if operation == "IndexFaces":
                response = rekognition.index_faces(CollectionId=COLLECTION, Image={"Bytes": indexed_photo},
                                                   ExternalImageId=external_id, MaxFaces=1)
                ledger.indexed.update(r["Face"]["FaceId"] for r in response["FaceRecords"])
            elif operation == "SearchFacesByImage":
                rekognition.search_faces_by_image(CollectionId=COLLECTION, Image={"Bytes": probe}, MaxFaces=5)
            elif operation == "DetectFaces":
                rekognition.detect_faces(Image={"Bytes": probe})
            elif operation == "ListFaces":
                rekognition.list_faces(CollectionId=COLLECTION, MaxResults=100)
            else:
                rekognition.delete_faces(CollectionId=COLLECTION, FaceIds=[victim])
                ledger.deleted.add(victim)
        except Exception as exc:  # noqa: BLE001 - every error is counted by type; none is expected
            tally.add(operation, time.perf_counter() - start, _error_name(exc))
            if operation == "IndexFaces":
                ledger.failed_index_ids.add(external_id)
            elif operation == "DeleteFaces":
                ledger.uncertain.add(victim)
            continue
        tally.add(operation, time.perf_counter() - start, None)


def _percentiles(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"requests": 0}
    ms = np.array(seconds) * 1000
    return {"requests": len(seconds), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "mean_ms": round(float(ms.mean()), 1)}


def _photos(faces_dir: Path) -> list[tuple[bytes, bytes]]:
    lfw = faces_dir / "lfw_erstrong"
    people = sorted(p for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2)[:PEOPLE]
    return [tuple(p.read_bytes() for p in sorted(person.glob("*.jpg"))[:2]) for person in people]  # type: ignore[misc]


def _consistency(listed: dict[str, str | None], ledgers: list[_Ledger]) -> dict[str, Any]:
    """Compare the collection as listed after the run with what the clients were told."""
    indexed = set().union(*(l.indexed for l in ledgers))
    deleted = set().union(*(l.deleted for l in ledgers))
    uncertain = set().union(*(l.uncertain for l in ledgers))
    failed_ids = set().union(*(l.failed_index_ids for l in ledgers))
    expected = indexed - deleted - uncertain
    result = {
        "faces_listed": len(listed),
        "acknowledged_undeleted_missing": len(expected - listed.keys()),
        "acknowledged_deletions_still_listed": len(deleted & listed.keys()),
        "listed_but_never_acknowledged": len(listed.keys() - indexed),
        "committed_by_failed_index_requests": sum(1 for x in listed.values() if x in failed_ids),
        "deletions_of_unknown_outcome": len(uncertain),
    }
    result["consistent"] = not any(result[k] for k in (
        "acknowledged_undeleted_missing", "acknowledged_deletions_still_listed",
        "listed_but_never_acknowledged", "committed_by_failed_index_requests"))
    return result


def _audited_requests(data_dir: Path, key_id: str) -> int:
    """Requests the audit log stands for under ``key_id``: one per record, or ``count`` for a
    record of the pre-gate rejection log."""
    store = open_store(sqlite_url(data_dir))
    try:
        with store.reader() as tx:
            records = audit.stored_records(tx)
    finally:
        store.close()
    return sum(int(r.get("count", 1)) for r in records if r.get("key_id") == key_id)


def run_load_bench(faces_dir: Path, duration: float = 300, clients: int = 50, progress: Progress | None = None) -> dict[str, Any]:
    """Run the load for ``duration`` seconds from ``clients`` threads; the result for load.json."""
    photos = _photos(faces_dir)
    with tempfile.TemporaryDirectory() as directory:
        data_dir = Path(directory)
        store = open_store(sqlite_url(data_dir))
        key = create_access_key(store, SecretBox.for_data_dir(data_dir), "load-bench")
        store.close()
        port = free_port()
        server = start_serve_process(data_dir, port, workers=WORKERS)
        try:
            endpoint = f"http://127.0.0.1:{port}"
            admin = _client(endpoint, key)
            admin.create_collection(CollectionId=COLLECTION)
            setup_requests = 1
            tally, ledgers = _Tally(), [_Ledger() for _ in range(clients)]
            connections = [_client(endpoint, key) for _ in range(clients)]
            load_before = os.getloadavg()
            start = time.monotonic()
            deadline = start + duration
            threads = [
                threading.Thread(target=_one_client, args=(n, connections[n], photos, deadline, tally, ledgers[n]), daemon=True)
                for n in range(clients)
            ]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                time.sleep(1)
                if progress is not None:
                    progress(time.monotonic() - start, tally.requests, sum(tally.errors.values()))
            elapsed = time.monotonic() - start
            load_after = os.getloadavg()
            listed: dict[str, str | None] = {}
            for page in admin.get_paginator("list_faces").paginate(CollectionId=COLLECTION, PaginationConfig={"PageSize": 4096}):
                setup_requests += 1
                listed.update((f["FaceId"], f.get("ExternalImageId")) for f in page["Faces"])
        finally:
            server.send_signal(signal.SIGTERM)  # graceful: every answered request is committed and audited
            server.wait(timeout=60)
        consistency = _consistency(listed, ledgers)
        sent = tally.requests + setup_requests
        audited = _audited_requests(data_dir, key.access_key_id)
    every = [s for seconds in tally.latencies.values() for s in seconds]
    return {
        "workers": WORKERS,
        "clients": clients,
        "duration_s": round(elapsed, 1),
        "cores": os.cpu_count(),
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "mix": MIX,
        "requests": tally.requests,
        "errors": dict(sorted(tally.errors.items())),
        "error_count": sum(tally.errors.values()),
        "requests_per_second": round(tally.requests / elapsed, 2),
        "latency": {"overall": _percentiles(every), **{op: _percentiles(s) for op, s in tally.latencies.items()}},
        "consistency": consistency,
        "audit": {"requests_sent": sent, "requests_audited": audited, "equal": audited == sent},
        "note": "each client a thread with its own boto3 client (SigV4, HTTP keep-alive) in the bench's "
                "process; the server is `facegate serve --workers 2` as a child process on the same machine; "
                "latency is per request as the client sees it, errors excluded",
    }
