"""What the server remembers between requests never outlives what it was read from.

A parsed policy set is kept for the exact text it was parsed from; the texts, the pack
states, the settings and the key's row are read again for every request. So a change made by another process (the CLI, a second server
on the same database) or an edit of a pack file counts from the very next request.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from facegate.governance.identity import Identity, create_organization
from facegate.governance.keys import create_access_key, key_lookup, revoke_access_key
from facegate.governance.policy import Policies, set_moratorium_end
from facegate.store.database import Store, open_store, sqlite_url
from facegate.store.records import CollectionRecord
from facegate.store.secrets import SecretBox
from tests.support.server import running_server

CALLER = Identity("AKIATESTTESTTESTTEST", "default", "commercial", "photo_library", ())
POLICE = Identity("AKIAPOLICEPOLICEPOLI", "Metro Police", "law_enforcement", "criminal_investigation", ())


def forbid_listing(reason: str) -> str:
    return f'@id("no-listing")\n@reason("{reason}")\nforbid (principal, action == Action::"ListCollections", resource);\n'


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "packs").mkdir()
    return tmp_path


@pytest.fixture
def server_store(data_dir: Path) -> Store:
    """The serving process's store."""
    store = open_store(sqlite_url(data_dir), load_index=False)
    yield store
    store.close()


@pytest.fixture
def cli_store(data_dir: Path, server_store: Store) -> Store:
    """Another process's store on the same database (the ``facegate`` CLI)."""
    store = open_store(sqlite_url(data_dir), load_index=False)
    yield store
    store.close()


def may_list(policies: Policies) -> tuple[bool, list[str]]:
    decision = policies.decide(CALLER, "ListCollections", None, {}, {}, None)
    return decision.allowed, [p.reason for p in decision.policies if not decision.allowed]


def test_a_pack_enabled_by_another_process_counts_at_the_next_decision(data_dir, server_store, cli_store):
    (data_dir / "packs" / "house-rules.cedar").write_text(forbid_listing("not here"))
    serving = Policies(server_store, data_dir / "packs")
    assert may_list(serving) == (True, [])
    Policies(cli_store, data_dir / "packs").set_enabled("house-rules", True)
    assert may_list(serving) == (False, ["not here"])
    Policies(cli_store, data_dir / "packs").set_enabled("house-rules", False)
    assert may_list(serving) == (True, [])


def house_rules_enabled(data_dir: Path, store: Store, reason: str) -> tuple[Path, Policies]:
    """A custom pack forbidding ListCollections for ``reason``, enabled and in force."""
    pack = data_dir / "packs" / "house-rules.cedar"
    pack.write_text(forbid_listing(reason))
    serving = Policies(store, data_dir / "packs")
    serving.set_enabled("house-rules", True)
    assert may_list(serving) == (False, [reason])
    return pack, serving


def test_an_edited_pack_file_counts_at_the_next_decision(data_dir, server_store):
    pack, serving = house_rules_enabled(data_dir, server_store, "first reason")
    pack.write_text(forbid_listing("a second reason"))
    assert may_list(serving) == (False, ["a second reason"])
    second = pack.stat()
    pack.write_text(forbid_listing("a third reason!"))  # the same size as the second
    os.utime(pack, ns=(second.st_atime_ns, second.st_mtime_ns))  # and its modification time put back
    assert may_list(serving) == (False, ["a third reason!"])


def test_a_pack_file_replaced_by_a_rename_counts_at_the_next_decision(data_dir, server_store):
    pack, serving = house_rules_enabled(data_dir, server_store, "before")
    replacement = data_dir / "packs" / ".house-rules.cedar.new"
    replacement.write_text(forbid_listing("after!"))
    replacement.replace(pack)  # as editors and configuration tools save
    assert may_list(serving) == (False, ["after!"])
    pack.unlink()
    assert may_list(serving) == (True, [])


def test_a_custom_pack_overriding_a_shipped_one_counts_at_the_next_decision(data_dir, server_store):
    serving = Policies(server_store, data_dir / "packs")
    assert may_list(serving) == (True, [])
    (data_dir / "packs" / "baseline.cedar").write_text(forbid_listing("our baseline"))
    assert may_list(serving) == (False, ["our baseline"])


def test_the_moratorium_end_set_by_another_process_counts_at_the_next_decision(data_dir, server_store, cli_store):
    serving = Policies(server_store, data_dir / "packs")
    suspects = CollectionRecord(2, POLICE.organization, "suspects", "arn", "", 0.0)
    params = {"CollectionId": "suspects", "FaceMatchThreshold": 99.0}
    now = 1_800_000_000.0  # 2027

    def deciding() -> list[str]:
        return [p.id for p in serving.decide(POLICE, "SearchFaces", suspects, {}, params, "case-1", now=now).policies]

    assert deciding() == ["moratorium-2020"]
    set_moratorium_end(cli_store, "2026-01-01")
    assert deciding() == ["baseline-allow"]


def test_a_key_revoked_by_another_process_is_refused_at_its_next_request(data_dir, server_store, cli_store):
    box = SecretBox.for_data_dir(data_dir)
    key = create_access_key(cli_store, box, "soon-revoked")
    key_for = key_lookup(server_store, box)
    found = key_for(key.access_key_id)
    assert found is not None and found.secret_access_key == key.secret_access_key
    assert key_for(key.access_key_id) == found  # the second lookup, with the secret remembered
    revoke_access_key(cli_store, key.access_key_id)
    assert key_for(key.access_key_id) is None


def test_a_key_is_looked_up_with_its_organisation_as_it_is_now(data_dir, server_store, cli_store):
    box = SecretBox.for_data_dir(data_dir)
    create_organization(cli_store, "Amber Alert", "ngo", ("approved_child_safety",))
    key = create_access_key(cli_store, box, "rescue", owner="Amber Alert", purpose="missing_children")
    key_for = key_lookup(server_store, box)
    found = key_for(key.access_key_id)
    assert found is not None
    assert found.identity == Identity(key.access_key_id, "Amber Alert", "ngo", "missing_children", ("approved_child_safety",))
    with cli_store.transaction() as tx:  # no command changes a sector; the lookup must not assume so
        tx.connection.exec_driver_sql("UPDATE organizations SET sector = 'law_enforcement' WHERE name = 'Amber Alert'")
    found = key_for(key.access_key_id)
    assert found is not None and found.identity.sector == "law_enforcement"


def test_a_served_key_revoked_from_the_cli_is_refused_at_its_very_next_request(tmp_path):
    with running_server(tmp_path / "served") as server:
        key = server.new_key("soon-revoked")
        client = server.client(key)
        assert client.list_collections()["CollectionIds"] == []
        cli = open_store(sqlite_url(server.facegate.data_dir), load_index=False)
        try:
            revoke_access_key(cli, key.access_key_id)
        finally:
            cli.close()
        with pytest.raises(ClientError) as refused:
            client.list_collections()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
