"""The AWS CLI, unchanged, against facegate with --endpoint-url."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.photos import lfw_photo
from tests.support.server import running_server

AWS = str(Path(sys.executable).parent / "aws")


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("data")) as server:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": server.key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": server.key.secret_access_key,
            "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

        def run(*args: str) -> dict:
            done = subprocess.run(
                [AWS, "rekognition", *args, "--endpoint-url", server.endpoint, "--output", "json"],
                env=env, capture_output=True, text=True, timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout or "{}")

        yield run


def test_cli_creates_indexes_searches_and_deletes(aws, faces_dir, tmp_path):
    created = aws("create-collection", "--collection-id", "cli")
    assert created["StatusCode"] == 200 and ":eu-west-1:" in created["CollectionArn"]
    assert "cli" in aws("list-collections")["CollectionIds"]
    indexed = aws(
        "index-faces", "--collection-id", "cli", "--external-image-id", "powell",
        "--image-bytes", f"fileb://{lfw_photo(faces_dir, 'Colin_Powell', 1)}",
    )
    face_id = indexed["FaceRecords"][0]["Face"]["FaceId"]
    found = aws(
        "search-faces-by-image", "--collection-id", "cli", "--face-match-threshold", "90",
        "--image-bytes", f"fileb://{lfw_photo(faces_dir, 'Colin_Powell', 2)}",
    )
    assert [m["Face"]["FaceId"] for m in found["FaceMatches"]] == [face_id]
    detected = aws("detect-faces", "--image-bytes", f"fileb://{lfw_photo(faces_dir, 'Tony_Blair', 2)}")
    assert len(detected["FaceDetails"]) == 1
    assert aws("describe-collection", "--collection-id", "cli")["FaceCount"] == 1
    assert aws("delete-collection", "--collection-id", "cli")["StatusCode"] == 200
