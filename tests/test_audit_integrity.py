"""`facegate audit verify` catches an edit to any column of the audit log, and to the state
that decides requests; administrative changes are audited in their own transaction.

The database is edited the way an insider would, with sqlite3 on the file, and checked with
the real `facegate` command (click's runner, in-process)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from facegate.cli.main import cli
from facegate.cli.server import _create_first_key
from facegate.governance import audit
from facegate.governance.audited_state import verify_database
from facegate.governance.identity import create_organization
from facegate.governance.keys import create_access_key, revoke_access_key
from facegate.governance.policy import Policies, set_moratorium_end
from facegate.governance.retention import add_consent
from facegate.store import audit_chain, schema
from facegate.store.database import open_store, sqlite_url
from facegate.store.migrations import migrate
from facegate.store.secrets import SecretBox
from facegate.store.transaction import Transaction


def facegate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def verify(directory: Path) -> tuple[int, dict]:
    code, out, _ = facegate("audit", "verify", "--json", "--data-dir", str(directory))
    return code, json.loads(out)


def edit(directory: Path, *statements: str) -> None:
    database = sqlite3.connect(directory / "facegate.db")
    for statement in statements:
        database.execute(statement)
    database.commit()
    database.close()


@pytest.fixture
def governed(tmp_path) -> tuple[Path, dict[str, str | int]]:
    """A data directory whose state was made through governance, plus one search record of
    Metro PD's as the gate writes it. Returns the directory and names in it."""
    directory = tmp_path / "data"
    directory.mkdir()
    store = open_store(sqlite_url(directory))
    box = SecretBox.for_data_dir(directory)
    create_organization(store, "Metro PD", "law_enforcement")
    police = create_access_key(store, box, "triage", "Metro PD", "missing_children")
    old = create_access_key(store, box, "old", "Metro PD", "missing_children")
    revoke_access_key(store, old.access_key_id)
    Policies(store).set_enabled("eu-ai-act-art5", True)
    set_moratorium_end(store, "2031-01-01")
    add_consent(store, "Metro PD", "consent-1", "officer 1", time.time() + 86400)
    with store.transaction() as tx:
        search = audit.append(tx, {"key_id": police.access_key_id, "organization": "Metro PD", "purpose": "missing_children",
                                   "operation": "SearchFacesByImage", "decision": "allow", "status": 200, "summary": {}})
    store.close()
    return directory, {"search": search["seq"], "police": police.access_key_id, "old": old.access_key_id}


def test_an_untouched_log_and_state_verify(governed):
    directory, _ = governed
    code, verdict = verify(directory)
    assert (code, verdict["ok"], verdict["problems"]) == (0, True, [])


@pytest.mark.parametrize("column, change", [
    ("organization", "organization = 'default'"),
    ("operation", "operation = 'DetectFaces'"),
    ("recorded_at", "recorded_at = recorded_at - 30 * 86400"),
    ("seq", "seq = 1000"),
])
def test_editing_an_audit_column_is_reported_naming_the_record_and_the_column(governed, column, change):
    directory, names = governed
    edit(directory, f"UPDATE audit_log SET {change} WHERE seq = {names['search']}")
    code, verdict = verify(directory)
    assert code == 1 and not verdict["ok"]
    assert any(p.startswith(f"record {names['search']}: its {column} column says") for p in verdict["problems"]), verdict


def test_a_record_whose_organisation_column_lies_is_still_shown_and_exported_with_a_warning(governed):
    directory, names = governed
    edit(directory, f"UPDATE audit_log SET organization = 'default' WHERE seq = {names['search']}")
    code, out, err = facegate("audit", "show", "--org", "Metro PD", "--op", "SearchFacesByImage", "--data-dir", str(directory))
    assert code == 1 and out.split()[0] == str(names["search"])
    assert "does not verify" in err and f"record {names['search']}: its organization column" in err
    code, out, err = facegate("audit", "export", "--data-dir", str(directory))
    exported = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and exported[names["search"] - 1]["organization"] == "Metro PD" and "does not verify" in err


@pytest.mark.parametrize("statement", [
    "DELETE FROM settings WHERE key = 'audit_head'",
    "UPDATE settings SET value = 'not json' WHERE key = 'audit_head'",
])
def test_a_removed_or_garbled_audit_head_is_reported(governed, statement):
    directory, _ = governed
    edit(directory, statement)
    code, verdict = verify(directory)
    assert code == 1 and "audit head" in verdict["problem"]


@pytest.mark.parametrize("statement, reported", [
    ("UPDATE policy_packs SET enabled = 0 WHERE name = 'eu-ai-act-art5'", "policy pack eu-ai-act-art5 is off"),
    ("INSERT INTO policy_packs VALUES ('us-police-moratorium-2020', 0, 0)", "policy pack us-police-moratorium-2020 is off"),
    ("UPDATE organizations SET sector = 'commercial' WHERE name = 'Metro PD'", "organisation 'Metro PD' has sector 'commercial'"),
    ("""UPDATE organizations SET flags = '["approved_child_safety"]' WHERE name = 'Metro PD'""", "organisation 'Metro PD' has flags"),
    ("DELETE FROM organizations WHERE name = 'Metro PD'", "organisation 'Metro PD' was recorded by record"),
    ("INSERT INTO organizations VALUES ('Ghost', 'ngo', '[]', 0)", "organisation 'Ghost' is in the organizations table but no"),
    ("UPDATE access_keys SET purpose = 'criminal_investigation' WHERE name = 'triage'", "has purpose 'criminal_investigation'"),
    ("UPDATE access_keys SET owner = 'default' WHERE name = 'triage'", "has organization 'default'"),
    ("UPDATE access_keys SET revoked_at = NULL WHERE name = 'old'", "has revoked False"),
    ("UPDATE settings SET value = '0' WHERE key = 'moratorium_ends'", "the moratorium's end is '0'"),
    ("UPDATE consents SET expires_at = expires_at + 86400 * 365", "has expires_at"),
])
def test_edited_governance_state_is_reported(governed, statement, reported):
    directory, _ = governed
    edit(directory, statement)
    code, verdict = verify(directory)
    assert code == 1 and any(reported in p for p in verdict["problems"]), verdict


def test_a_request_naming_an_administrative_operation_changes_no_audited_state(governed):
    """An unknown operation is recorded under the name the client sent: it must not count."""
    directory, _ = governed
    store = open_store(sqlite_url(directory))
    with store.transaction() as tx:
        audit.append(tx, {"key_id": "AKIAEXAMPLE", "operation": "facegate:PolicyDisable", "status": 400,
                          "error_type": "UnsupportedOperationException", "summary": {"pack": "eu-ai-act-art5"}})
    store.close()
    assert verify(directory)[0] == 0


def test_key_creation_and_revocation_are_audited_without_the_secret(governed):
    directory, _ = governed
    code, out, _ = facegate("keys", "create", "--org", "Metro PD", "--purpose", "missing_children", "--name", "desk",
                            "--json", "--data-dir", str(directory))
    key = json.loads(out)
    assert facegate("keys", "revoke", key["AccessKeyId"], "--data-dir", str(directory))[0] == 0
    code, out, _ = facegate("audit", "export", "--data-dir", str(directory))
    records = [json.loads(line) for line in out.splitlines()]
    created, revoked = records[-2:]
    assert (created["operation"], created["organization"], created["summary"]) == (
        "facegate:AccessKeyCreate", "Metro PD",
        {"access_key_id": key["AccessKeyId"], "organization": "Metro PD", "purpose": "missing_children", "name": "desk"},
    )
    assert (revoked["operation"], revoked["summary"]) == ("facegate:AccessKeyRevoke", {"access_key_id": key["AccessKeyId"]})
    assert key["SecretAccessKey"] not in out
    assert verify(directory)[0] == 0


def test_the_first_key_serve_creates_is_audited(tmp_path):
    store = open_store(sqlite_url(tmp_path))
    _create_first_key(store, SecretBox.for_data_dir(tmp_path), "http://127.0.0.1:8000")
    with store.reader() as tx:
        records = audit.stored_records(tx)
    assert [(r["operation"], r["key_id"]) for r in records] == [
        ("facegate:OrganizationCreate", "facegate-serve"), ("facegate:AccessKeyCreate", "facegate-serve")
    ]
    assert records[1]["summary"]["name"] == "initial"
    store.close()


def _state(store) -> tuple:  # type: ignore[no-untyped-def]
    with store.reader() as tx:
        return (tx.list_organizations(), tx.list_access_keys(), tx.pack_states(), tx.get_setting("moratorium_ends"),
                tx.list_consents())


@pytest.mark.parametrize("change", [
    lambda store, box, key: create_organization(store, "Polaris", "ngo"),
    lambda store, box, key: create_access_key(store, box, "app"),
    lambda store, box, key: revoke_access_key(store, key),
    lambda store, box, key: Policies(store).set_enabled("eu-ai-act-art5", True),
    lambda store, box, key: set_moratorium_end(store, "2031-01-01"),
    lambda store, box, key: add_consent(store, "default", "consent-1", "someone", time.time() + 60),
], ids=["orgs create", "keys create", "keys revoke", "policy enable", "set-moratorium-end", "consent add"])
def test_an_administrative_change_commits_only_with_its_audit_record(tmp_path, monkeypatch, change):
    """The governance layer writes the record inside the change's own transaction, so no
    front door can make the change without it."""
    store, box = open_store(sqlite_url(tmp_path)), SecretBox.for_data_dir(tmp_path)
    key = create_access_key(store, box, "first").access_key_id
    before = _state(store)
    monkeypatch.setattr(audit, "append", _failing_append)
    with pytest.raises(RuntimeError):
        change(store, box, key)
    assert _state(store) == before
    store.close()


def _failing_append(tx, fields):  # type: ignore[no-untyped-def]
    raise RuntimeError("the audit log is unavailable")


def test_a_database_from_before_key_audits_starts_from_one_state_baseline(tmp_path):
    """Keys, organisations and packs made before this version were not all audited: the
    upgrade records them once, and later edits are caught against that record."""
    engine = create_engine(sqlite_url(tmp_path))
    with engine.begin() as connection:
        migrate(connection, target=3)
        connection.execute(schema.organizations.insert().values(name="Metro PD", sector="law_enforcement", flags="[]", created_at=0))
        connection.execute(schema.access_keys.insert().values(access_key_id="AKIAOLDKEY0000000000", name="old", owner="Metro PD",
                                                              purpose="missing_children", secret_ciphertext=b"x", created_at=0))
        connection.execute(schema.policy_packs.insert().values(name="eu-ai-act-art5", enabled=1, updated_at=0))
        audit_chain.append(Transaction(connection), {"operation": "facegate:PolicyEnable", "status": 200, "summary": {"pack": "eu-ai-act-art5"}})
    engine.dispose()
    for _ in range(2):  # opening again adds nothing
        open_store(sqlite_url(tmp_path)).close()
    code, out, _ = facegate("audit", "export", "--data-dir", str(tmp_path))
    baseline = [json.loads(line) for line in out.splitlines() if "StateBaseline" in line]
    assert len(baseline) == 1 and baseline[0]["summary"]["access_keys"] == [
        {"access_key_id": "AKIAOLDKEY0000000000", "organization": "Metro PD", "purpose": "missing_children", "name": "old", "revoked": False}
    ]
    assert verify(tmp_path)[0] == 0
    edit(tmp_path, "UPDATE access_keys SET purpose = 'criminal_investigation'")
    code, verdict = verify(tmp_path)
    assert code == 1 and "has purpose 'criminal_investigation'" in verdict["problem"]


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_url(request, tmp_path):
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    from tests.support.postgres import fresh_database

    return fresh_database(request.getfixturevalue("postgres_server_url"))


def test_column_and_state_edits_are_caught_on_both_backends(any_database_url, tmp_path):
    store = open_store(any_database_url)
    create_organization(store, "Metro PD", "law_enforcement")
    create_access_key(store, SecretBox.for_data_dir(tmp_path), "triage", "Metro PD", "missing_children")
    add_consent(store, "Metro PD", "consent-1", "officer 1", time.time() + 86400)
    with store.snapshot() as tx:
        assert verify_database(tx).ok
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET recorded_at = recorded_at - 86400 WHERE seq = 2"))
        connection.execute(text("UPDATE consents SET expires_at = expires_at + 86400"))
    with store.snapshot() as tx:
        problems = verify_database(tx).problems
    assert problems[0].startswith("record 2: its recorded_at column says")
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET recorded_at = recorded_at + 86400 WHERE seq = 2"))
    with store.snapshot() as tx:
        problems = verify_database(tx).problems
    assert len(problems) == 1 and "has expires_at" in problems[0]
    store.close()


def test_a_database_url_without_facegate_in_it_is_not_initialised_by_a_reading_command(postgres_server_url, tmp_path, monkeypatch):
    from tests.support.postgres import fresh_database

    url = fresh_database(postgres_server_url)
    monkeypatch.setenv("FACEGATE_DATABASE_URL", url)
    code, _, err = facegate("audit", "verify", "--data-dir", str(tmp_path))
    assert code == 1 and "holds no facegate database" in err
    engine = create_engine(url)
    with engine.connect() as connection:
        assert not inspect(connection).get_table_names()
    engine.dispose()


def test_a_consistently_rewritten_log_is_caught_against_a_kept_anchor(governed):
    """Dropping the newest record and rewinding the head fits together; a head kept
    elsewhere does not."""
    directory, names = governed
    code, out, _ = facegate("audit", "verify", "--data-dir", str(directory))
    anchor = out.split()[-1]
    assert code == 0 and anchor.startswith(f"{names['search']}:")
    database = sqlite3.connect(directory / "facegate.db")
    previous = database.execute("SELECT seq, hash FROM audit_log WHERE seq = ?", (names["search"] - 1,)).fetchone()
    database.execute("DELETE FROM audit_log WHERE seq = ?", (names["search"],))
    database.execute("UPDATE settings SET value = ? WHERE key = 'audit_head'", (json.dumps({"seq": previous[0], "hash": previous[1]}),))
    database.commit()
    database.close()
    assert verify(directory)[0] == 0  # the limit of a chain kept beside its head
    code, out, _ = facegate("audit", "verify", "--json", "--anchor", anchor, "--data-dir", str(directory))
    assert code == 1 and "before the anchored record" in json.loads(out)["problem"]


def test_verify_beside_a_live_writer_reports_no_false_tampering(any_database_url, tmp_path):
    """A key created while verification reads the log is in neither half of what it compares."""
    store = open_store(any_database_url)
    box = SecretBox.for_data_dir(tmp_path)
    create_access_key(store, box, "first")
    created = []

    def meanwhile(record, chained):  # type: ignore[no-untyped-def]
        if not created:
            created.append(create_access_key(store, box, "during"))

    with store.snapshot() as tx:
        verdict = verify_database(tx, meanwhile)
    assert created and verdict.ok, verdict.problems
    with store.snapshot() as tx:
        assert verify_database(tx).ok
    store.close()
