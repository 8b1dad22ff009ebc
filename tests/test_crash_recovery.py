"""An acknowledged IndexFaces survives kill -9 of the server, and the index matches the database."""

from __future__ import annotations

import os
import signal

import pytest

from facegate.store.database import open_store, sqlite_url
from tests.support.photos import lfw_photo
from facegate.bench.local_server import free_port, start_serve_process
from tests.support.cli_server import client_factory

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
