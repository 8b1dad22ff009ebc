"""`facegate serve --workers 2`: several processes answer on one port, agree, stay up
while busy, and never outlive the server.

Each worker holds its own in-memory index; a face indexed or deleted through one must
be found, or not, by every other at once. Connections land on workers as the kernel
chooses, so each search uses a fresh client (a fresh connection)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from facegate.bench.local_server import free_port, has_exited, start_serve_process, worker_pids
from tests.support.cli_server import client_factory
from tests.support.photos import lfw_photo

pytestmark = pytest.mark.slow


def test_two_worker_processes_serve_one_consistent_collection(tmp_path, faces_dir):
    data_dir = tmp_path / "data"
    port = free_port()
    client = client_factory(data_dir, port, "workers")

    probe = {"Bytes": lfw_photo(faces_dir, number=2).read_bytes()}
    server = start_serve_process(data_dir, port, workers=2)
    try:
        client().create_collection(CollectionId="shared")
        face_id = client().index_faces(CollectionId="shared", Image={"Bytes": lfw_photo(faces_dir).read_bytes()})["FaceRecords"][0]["Face"]["FaceId"]
        found = [[m["Face"]["FaceId"] for m in client().search_faces_by_image(CollectionId="shared", Image=probe)["FaceMatches"]]
                 for _ in range(6)]
        assert found == [[face_id]] * 6
        client().delete_faces(CollectionId="shared", FaceIds=[face_id])
        after = [client().search_faces_by_image(CollectionId="shared", Image=probe, FaceMatchThreshold=0)["FaceMatches"] for _ in range(6)]
        assert after == [[]] * 6
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0  # graceful shutdown of the supervisor and its workers
    assert b'"POST / HTTP/1.1"' not in (data_dir / "serve.log").read_bytes()  # no access log unless asked for


def test_workers_write_an_access_log_when_asked_for(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    client = client_factory(data_dir, port, "logged")
    server = start_serve_process(data_dir, port, workers=2, options=("--access-log",))
    try:
        for _ in range(6):
            client().list_collections()
    finally:
        server.terminate()
        assert server.wait(timeout=30) == 0
    log = (data_dir / "serve.log").read_bytes()
    assert log.count(b'"POST / HTTP/1.1" 200') >= 6


def test_busy_workers_are_not_killed_and_every_request_is_answered(tmp_path, faces_dir):
    # uvicorn's supervisor killed a worker that missed its 5 s health-check ping, which a
    # worker does when detection holds its GIL on a saturated CPU, cutting every request it
    # had in flight. Here both workers are kept busy with real photos, then paused for 6 s
    # (SIGSTOP), as a long computation on a saturated CPU would, whatever the engine costs.
    data_dir = tmp_path / "data"
    port = free_port()
    client = client_factory(data_dir, port, "busy")
    photos = [p.read_bytes() for p in sorted((faces_dir / "face_recognition_ageitgey").glob("*/*.jp*g"))][:8]
    server = start_serve_process(data_dir, port, workers=2)
    workers, resumed = worker_pids(server.pid), threading.Event()
    try:
        assert len(workers) >= 2
        client().create_collection(CollectionId="busy")

        def one_client(number: int) -> list[str]:
            rekognition, failures, n, after_pause = client(), [], 0, 0
            while after_pause < 2:  # busy from before the pause until after it
                after_pause += resumed.is_set()
                image = {"Bytes": photos[(number + n) % len(photos)]}
                try:
                    if n % 2:
                        rekognition.index_faces(CollectionId="busy", Image=image, MaxFaces=1)
                    else:
                        rekognition.detect_faces(Image=image, Attributes=["ALL"])
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failures.append(f"client {number} request {n}: {exc!r}")
                n += 1
            return failures

        with ThreadPoolExecutor(8) as pool:
            results = [pool.submit(one_client, number) for number in range(8)]
            try:
                time.sleep(1)  # every client has a request in flight
                for pid in workers:
                    os.kill(pid, signal.SIGSTOP)
                time.sleep(6)
            finally:
                for pid in workers:
                    with contextlib.suppress(ProcessLookupError):  # killed while paused, before the fix
                        os.kill(pid, signal.SIGCONT)
                resumed.set()
        failures = [f for result in results for f in result.result()]
        assert failures == []
        assert worker_pids(server.pid) == workers
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_workers_exit_when_the_server_is_killed_and_the_port_can_be_served_again(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    server = start_serve_process(data_dir, port, workers=2)
    workers = worker_pids(server.pid)

    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    deadline = time.monotonic() + 5
    while not all(has_exited(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in workers if not has_exited(pid)]
    for pid in orphans:  # uvicorn's workers outlived it, holding the port
        os.kill(pid, signal.SIGKILL)
    assert len(workers) >= 2
    assert orphans == []

    again = start_serve_process(data_dir, port, workers=2)  # raises if the port is still held
    again.terminate()
    assert again.wait(timeout=30) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_request_sent_on_a_kept_alive_connection_to_a_paused_server_is_answered(tmp_path, workers):
    # A server that was stopped past uvicorn's default 5 s keep-alive closed, on waking,
    # the idle connection a client had just written its next request to: the client got
    # "connection closed" and no answer. The same happens to a worker whose event loop
    # stalls on a saturated CPU.
    data_dir = tmp_path / "data"
    port = free_port()
    rekognition = client_factory(data_dir, port, "keep-alive")()
    server = start_serve_process(data_dir, port, workers=workers)
    paused = worker_pids(server.pid) if workers > 1 else [server.pid]
    try:
        rekognition.list_collections()  # opens the connection the next call reuses
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(0.5)
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(rekognition.list_collections)
            time.sleep(6)  # the request waits in the socket, past a 5 s keep-alive
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
            assert answer.result(timeout=30)["CollectionIds"] == []
    finally:
        for pid in paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        server.terminate()
        server.wait(timeout=30)
