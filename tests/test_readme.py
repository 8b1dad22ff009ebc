"""The README's boto3 script runs as written against a live server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.server import running_server

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_boto3_script_runs_and_prints_what_it_promises(tmp_path, faces_dir):
    (script,) = python_blocks()
    with running_server(tmp_path / "data") as server:
        env = {
            **os.environ,
            "FACEGATE_ENDPOINT": server.endpoint,
            "FACEGATE_TEST_FACES": str(faces_dir),
            "AWS_ACCESS_KEY_ID": server.key.access_key_id,
            "AWS_SECRET_ACCESS_KEY": server.key.secret_access_key,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("[('powell-") and "blair" not in lines[0]
    assert lines[1] == "['colin']"
    assert lines[2] == "3"


def test_the_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make serve" in text and "make test" in text


def test_the_readme_quotes_every_shipped_pack_as_it_is():
    from importlib import resources

    text = README.read_text()
    packs = Path(str(resources.files("facegate.governance").joinpath("packs"))).glob("*.cedar")
    for pack in packs:
        assert pack.read_text().strip() in text, f"README is out of date for {pack.name}"


def test_the_readme_example_of_a_custom_pack_validates_against_the_schema(tmp_path):
    from facegate.governance.policy import Policies
    from facegate.store.database import open_store, sqlite_url

    example = re.search(r"### Writing your own pack.*?```cedar\n(.*?)```", README.read_text(), flags=re.S)
    assert example is not None
    store = open_store(sqlite_url(tmp_path))
    assert Policies(store).validate(example.group(1)) == []
    assert Policies(store).validate("forbid (principal, action, resource) when { context.nonsense };") != []


def test_every_image_the_readme_shows_is_committed():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    assert images, "the README should show its measured plots"
    for image in images:
        assert (README.parent / image).is_file(), image
