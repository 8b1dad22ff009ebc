"""The front door does not lie: a command run from the wrong folder says where it looked
instead of answering for a new, empty database; `make serve` and the README's commands
work as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from facegate.bench.local_server import FACEGATE
from facegate.cli.main import cli
from facegate.governance.keys import create_access_key
from facegate.store.database import open_store, sqlite_url
from facegate.store.secrets import SecretBox

ROOT = Path(__file__).resolve().parents[1]

NEEDS_A_DATA_DIRECTORY = [
    ["keys", "list"],
    ["keys", "revoke", "AKIAEXAMPLE"],
    ["orgs", "list"],
    ["policy", "list"],
    ["policy", "show", "baseline"],
    ["policy", "enable", "eu-ai-act-art5"],
    ["policy", "disable", "eu-ai-act-art5"],
    ["policy", "set-moratorium-end", "none"],
    ["policy", "test", "--key", "AKIAEXAMPLE", "--op", "DetectFaces"],
    ["audit", "show"],
    ["audit", "export"],
    ["audit", "verify"],
    ["consent", "add", "consent-1", "--subject", "someone", "--expires", "2030-01-01"],
    ["consent", "revoke", "consent-1"],
    ["retention", "enforce"],
]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty folder outside any checkout, with no facegate settings in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FACEGATE_DATA_DIR", raising=False)
    monkeypatch.delenv("FACEGATE_DATABASE_URL", raising=False)
    return tmp_path


@pytest.mark.parametrize("command", NEEDS_A_DATA_DIRECTORY, ids=" ".join)
def test_a_command_outside_a_data_directory_fails_naming_where_it_looked_and_creates_nothing(elsewhere, command):
    result = CliRunner().invoke(cli, command)
    assert result.exit_code != 0
    assert str(elsewhere / "data") in result.stderr and "--data-dir" in result.stderr
    assert list(elsewhere.iterdir()) == []


def test_audit_verify_from_the_wrong_folder_is_not_ok(elsewhere):
    """The reported case, through the installed command."""
    done = subprocess.run([FACEGATE, "audit", "verify"], capture_output=True, text=True, cwd=elsewhere)
    assert done.returncode == 1 and "OK" not in done.stdout
    assert f"no facegate data at {elsewhere / 'data'}" in done.stderr and "FACEGATE_DATA_DIR" in done.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_directory_without_a_database_is_not_opened(elsewhere):
    (elsewhere / "empty").mkdir()
    result = CliRunner().invoke(cli, ["keys", "list", "--data-dir", "empty"])
    assert result.exit_code != 0 and "no database file" in result.stderr
    assert list((elsewhere / "empty").iterdir()) == []


def test_creating_commands_make_a_data_directory_and_say_so(elsewhere):
    result = CliRunner().invoke(cli, ["orgs", "create", "Polaris", "--sector", "ngo"])
    assert result.exit_code == 0 and "created a new one" in result.stderr
    assert (elsewhere / "data" / "facegate.db").is_file()
    result = CliRunner().invoke(cli, ["keys", "create", "--org", "Polaris", "--json"])
    assert result.exit_code == 0 and "created a new one" not in result.stderr


def test_keys_create_refuses_a_database_whose_keys_need_a_master_key_it_lacks(elsewhere):
    """A second host without the server's master.key would mint keys no server can check."""
    server = elsewhere / "server"
    store = open_store(sqlite_url(server))
    create_access_key(store, SecretBox.for_data_dir(server), "initial")
    store.close()
    (server / "master.key").unlink()
    result = CliRunner().invoke(cli, ["keys", "create", "--data-dir", str(server)])
    assert result.exit_code != 0 and "master.key" in result.stderr
    assert not (server / "master.key").exists()


def test_consent_for_an_organisation_that_does_not_exist_is_refused(elsewhere):
    assert CliRunner().invoke(cli, ["orgs", "create", "Polaris", "--sector", "ngo"]).exit_code == 0
    result = CliRunner().invoke(cli, ["consent", "add", "consent-1", "--subject", "someone", "--expires", "2030-01-01",
                                      "--org", "acme"])
    assert result.exit_code != 0 and "no organisation 'acme'" in result.stderr
    export = CliRunner().invoke(cli, ["audit", "export"])
    assert "ConsentAdd" not in export.stdout


def test_make_serve_takes_a_port_and_a_data_directory():
    done = subprocess.run(["make", "-n", "serve", "PORT=9000", "DATA_DIR=/srv/facegate"], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert re.search(r"facegate serve .*--port 9000 --data-dir \"?/srv/facegate", done.stdout), done.stdout


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_says_where_the_facegate_command_lives():
    assert ".venv/bin/facegate" in _readme()


def test_the_readme_aws_cli_examples_name_a_region():
    """Without one the AWS CLI stops at "You must specify a region"."""
    (block,) = [b for b in re.findall(r"```sh\n(.*?)```", _readme(), flags=re.S) if "aws rekognition" in b]
    commands = re.sub(r"\\\n\s*", " ", block).splitlines()
    exported = any(line.startswith("export AWS_DEFAULT_REGION=") for line in commands)
    assert all(exported or "--region" in c for c in commands if c.startswith("aws "))


def test_the_readme_governance_example_creates_each_organisation_before_using_it():
    block = re.search(r"## Governance.*?```sh\n(.*?)```", _readme(), flags=re.S)
    assert block is not None
    created = {"default"}
    for line in block.group(1).splitlines():
        made = re.search(r"orgs create \"?([^\"\s]+)\"?", line)
        if made:
            created.add(made.group(1))
        for used in re.findall(r"--org \"?([^\"\s]+)\"?", line):
            assert used in created, f"{line!r} uses an organisation no earlier line creates"
