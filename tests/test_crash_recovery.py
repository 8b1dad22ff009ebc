"""An acknowledged IndexFaces survives kill -9 of the server (one process, or the parent
and workers of ``--workers 2``), the index matches the database, and the audit chain holds."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from click.testing import CliRunner

from facegate.bench.local_server import free_port, has_exited, start_serve_process, worker_pids
from facegate.cli.main import cli
from facegate.store.database import open_store, sqlite_url
from tests.support.cli_server import client_factory
from tests.support.photos import lfw_photo

pytestmark = pytest.mark.slow


def test_acknowledged_faces_survive_sigkill(tmp_path, faces_dir):
    data_dir = tmp_path / "data"
    port = free_port()
    client = client_factory(data_dir, port, "crash")()
    server = start_serve_process(data_dir, port)
    client.create_collection(CollectionId="crash")
    people = sorted(p.name for p in (faces_dir / "lfw_erstrong").iterdir() if p.is_dir())[:40]
    acknowledged: list[tuple[str, str]] = []
    try:
        for n, name in enumerate(people):
            if n == 12:
                os.kill(server.pid, signal.SIGKILL)  # mid-loop, with requests in flight or not
            try:
                response = client.index_faces(
                    CollectionId="crash", Image={"Bytes": lfw_photo(faces_dir, name, 1).read_bytes()}, ExternalImageId=name
                )
            except Exception:
                continue  # refused or cut off: never acknowledged, so nothing is promised
            acknowledged += [(r["Face"]["FaceId"], name) for r in response["FaceRecords"]]
    finally:
        server.kill()
        server.wait()
    assert len(acknowledged) >= 8

    server = start_serve_process(data_dir, port)
    try:
        listed = {f["FaceId"] for page in client.get_paginator("list_faces").paginate(CollectionId="crash") for f in page["Faces"]}
        assert {face_id for face_id, _ in acknowledged} <= listed
        for face_id, name in acknowledged[:5]:
            matches = client.search_faces_by_image(
                CollectionId="crash", Image={"Bytes": lfw_photo(faces_dir, name, 1).read_bytes()}, FaceMatchThreshold=99
            )["FaceMatches"]
            assert face_id in [m["Face"]["FaceId"] for m in matches]
    finally:
        server.send_signal(signal.SIGTERM)  # a graceful shutdown; uvicorn re-raises the signal once done
        assert server.wait(timeout=30) in (0, -signal.SIGTERM)
    store = open_store(sqlite_url(data_dir))
    assert store.index_disagreements() == []
    store.close()


CYCLES = 30
KILLS = ("parent", "worker", "parent and worker")
"""What each cycle kills with SIGKILL mid-indexing, in turn. After a worker alone, the parent
is stopped with SIGTERM, which must still exit cleanly."""

CUT_OFF = (ConnectionClosedError, EndpointConnectionError)
"""What a client may see of a kill: a cut or refused connection, never an error response."""


def test_acknowledged_faces_survive_sigkill_of_the_parent_or_a_worker_of_two(tmp_path, faces_dir):
    # About 7 s a cycle on two cores, most of it two workers starting (about 2.5 s) and the
    # audit check; each cycle's check that nothing was lost is the next cycle's first request.
    data_dir = tmp_path / "data"
    port = free_port()
    client = client_factory(data_dir, port, "crash-workers")
    people = sorted(p.name for p in (faces_dir / "lfw_erstrong").iterdir() if p.is_dir())[:12]
    photos = [lfw_photo(faces_dir, name, 1).read_bytes() for name in people]
    schedule = random.Random(9)
    acknowledged: set[str] = set()
    for cycle in range(CYCLES + 1):
        server = start_serve_process(data_dir, port, workers=2)
        try:
            if cycle == 0:
                client().create_collection(CollectionId="crash")
            listed = {f["FaceId"] for page in client().get_paginator("list_faces").paginate(CollectionId="crash")
                      for f in page["Faces"]}
            assert acknowledged <= listed, f"cycle {cycle}: acknowledged faces lost"
            if cycle == CYCLES:
                break
            acknowledged |= _index_while_killing(server, client, photos, KILLS[cycle % len(KILLS)], schedule, cycle)
        finally:
            _stop(server)
        # The real command, in this process (its start-up would cost a second a cycle).
        verify = CliRunner().invoke(cli, ["audit", "verify", "--data-dir", str(data_dir)])
        assert verify.exit_code == 0, f"cycle {cycle}: {verify.output}"
    store = open_store(sqlite_url(data_dir))
    assert store.index_disagreements() == []
    store.close()


def _index_while_killing(
    server: subprocess.Popen[bytes], client: Callable[[], Any], photos: list[bytes], kill: str, schedule: random.Random,
    cycle: int,
) -> set[str]:
    """Index from four concurrent clients; SIGKILL what ``kill`` names part-way; return the
    FaceIds acknowledged. A face committed whose response was cut off is not acknowledged,
    and may be listed later: the client cannot know, and nothing was promised.

    Each request has its own ExternalImageId: IndexFaces of the same bytes under the same
    ExternalImageId returns the face already stored, and every request here must add one."""
    acknowledged: set[str] = set()
    unexpected: list[str] = []
    indexing, stop = threading.Event(), threading.Event()

    def one_client(number: int) -> None:
        rekognition = client()
        for n in itertools.count(number):
            if stop.is_set():
                return
            try:
                response = rekognition.index_faces(CollectionId="crash", Image={"Bytes": photos[n % len(photos)]},
                                                   ExternalImageId=f"{cycle}-{number}-{n}", MaxFaces=1)
            except CUT_OFF:
                time.sleep(0.05)
                continue
            except Exception as exc:  # noqa: BLE001 - reported below, with the kill that caused it
                unexpected.append(repr(exc))
                return
            acknowledged.update(r["Face"]["FaceId"] for r in response["FaceRecords"])
            indexing.set()

    threads = [threading.Thread(target=one_client, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert indexing.wait(timeout=60), "no face was indexed"
        time.sleep(schedule.uniform(0.0, 0.8))  # faces acknowledged, and more in flight
        workers = worker_pids(server.pid)
        if kill == "worker":
            os.kill(schedule.choice(workers), signal.SIGKILL)
            time.sleep(0.5)  # the other worker answers; the parent restarts the killed one
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=30) == 0
        else:
            os.kill(server.pid, signal.SIGKILL)
            if kill == "parent and worker":
                os.kill(schedule.choice(workers), signal.SIGKILL)
            _wait_for_exit(workers)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert unexpected == [], f"after killing the {kill}"
    return acknowledged


def _stop(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the parent if it still runs, and wait until its workers have let go of the port."""
    workers = worker_pids(server.pid)
    server.kill()
    server.wait()
    _wait_for_exit(workers)


def _wait_for_exit(pids: list[int], timeout: float = 15) -> None:
    """Workers of a dead parent finish their in-flight requests (at most the 10 s graceful
    shutdown) and exit."""
    deadline = time.monotonic() + timeout
    while not all(has_exited(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = [pid for pid in pids if not has_exited(pid)]
    for pid in orphans:  # holding the port, they would fail every later cycle
        os.kill(pid, signal.SIGKILL)
    assert orphans == [], "workers outlived their parent"
