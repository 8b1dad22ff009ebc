"""`facegate serve --workers 2`: several processes answer on one port and agree.

Each worker holds its own in-memory index; a face indexed or deleted through one must
be found, or not, by every other at once. Connections land on workers as the kernel
chooses, so each search uses a fresh client (a fresh connection)."""

from __future__ import annotations


import pytest

from facegate.bench.local_server import free_port, start_serve_process
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
