"""The console's server-side rules: accounts, sessions, CSRF, roles, failed logins.

Driven through Starlette's TestClient against a real store: the checks hold on the server
whatever a page shows or hides. Each change must leave the audit record the CLI's change
leaves, and `facegate audit verify` must still pass.
"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from facegate.governance import console_accounts
from facegate.governance.audited_state import verify_database
from facegate.governance.console_accounts import (
    MAX_FAILURES_PER_ACCOUNT,
    SESSION_IDLE_SECONDS,
    SESSION_MAX_SECONDS,
    AccountError,
)
from facegate.governance.policy import Policies
from tests.support.console import CHEAP_HASHER, PASSWORD, console_under_test, csrf_token, log_in, post, records


@pytest.fixture
def console(tmp_path, monkeypatch):
    monkeypatch.setattr(console_accounts, "_hasher", CHEAP_HASHER)
    with console_under_test(tmp_path) as under_test:
        yield under_test


def _verified(store) -> bool:  # type: ignore[no-untyped-def]
    with store.snapshot() as tx:
        verdict = verify_database(tx)
    assert verdict.ok, verdict.problems
    return True


def _pack_on(console, name: str) -> bool:  # type: ignore[no-untyped-def]
    return Policies(console.store).pack(name).enabled


def test_a_login_sets_a_strict_httponly_cookie_and_is_audited(console):
    console.account("alice", "auditor")
    client = console.client()
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = [c for c in response.headers.get_list("set-cookie") if c.startswith("facegate_console=")][0].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert client.get("/console/").status_code == 200
    login = records(console.store)[-1]
    assert (login["operation"], login["key_id"], login["summary"]["account"]) == ("facegate:ConsoleLogin", "console:alice", "alice")


def test_pages_need_a_session(console):
    client = console.client()
    response = client.get("/console/audit")
    assert response.status_code == 303 and response.headers["location"].startswith("/console/login?next=/console/audit")
    assert client.post("/console/policies/eu-ai-act-art5", data={"enable": "1", "confirm": "yes"}).status_code == 401
    assert not _pack_on(console, "eu-ai-act-art5")


def test_a_wrong_password_is_refused_and_audited_without_the_password(console):
    console.account("alice", "admin")
    response = log_in(console.client(), "alice", "not the password at all")
    assert response.status_code == 401 and "facegate_console=" not in response.headers.get("set-cookie", "")
    failed = records(console.store)[-1]
    assert failed["operation"] == "facegate:ConsoleLoginFailed" and failed["status"] == 401
    assert failed["summary"] == {"account": "alice", "source": "testclient"}
    assert "not the password" not in str(records(console.store))
    assert _verified(console.store)


def test_failed_logins_for_one_account_are_throttled_even_with_the_right_password(console):
    console.account("alice", "admin")
    client = console.client()
    for _ in range(MAX_FAILURES_PER_ACCOUNT):
        assert log_in(client, "alice", "wrong password, again").status_code == 401
    response = log_in(client, "alice", PASSWORD)
    assert response.status_code == 429 and "too many failed logins" in response.text
    throttled = records(console.store)[-1]
    assert (throttled["error_type"], throttled["key_id"], throttled["operation"]) == (
        "ConsoleLoginThrottled", "console:alice", "facegate:ConsoleLogin")


def test_failed_logins_from_one_address_are_throttled_across_accounts(console, monkeypatch):
    monkeypatch.setattr(console_accounts, "MAX_FAILURES_PER_SOURCE", MAX_FAILURES_PER_ACCOUNT + 1)  # each costs a full argon2 check
    console.account("zoe", "auditor")
    client = console.client()
    for i in range(console_accounts.MAX_FAILURES_PER_SOURCE):
        assert log_in(client, f"guess{i}", "wrong password, again").status_code == 401
    assert log_in(client, "zoe", PASSWORD).status_code == 429


def test_a_successful_login_clears_the_accounts_failures(console):
    console.account("alice", "admin")
    client = console.client()
    for _ in range(MAX_FAILURES_PER_ACCOUNT - 1):
        log_in(client, "alice", "wrong password, again")
    assert log_in(client, "alice", PASSWORD).status_code == 303
    assert log_in(console.client(), "alice", "wrong password, again").status_code == 401  # counted afresh, not throttled


def test_an_auditor_cannot_change_anything_even_with_a_valid_form(console):
    client = console.logged_in("audrey", "auditor")
    before = len(records(console.store))
    for path, fields in [("/console/policies/eu-ai-act-art5", {"enable": "1", "confirm": "yes"}),
                         ("/console/organizations", {"name": "rogue", "sector": "commercial"}),
                         ("/console/keys", {"organization": "default", "purpose": "photo_library"})]:
        response = post(client, path, fields)
        assert response.status_code == 403 and "ConsoleAccessDenied" in response.text
    assert not _pack_on(console, "eu-ai-act-art5")
    with console.store.reader() as tx:
        assert tx.list_organizations() == [] and tx.count_access_keys() == 0
    refused = records(console.store)[before:]
    assert {r["error_type"] for r in refused} == {"ConsoleAccessDenied"} and all(r["key_id"] == "console:audrey" for r in refused)


def test_a_form_without_the_sessions_csrf_token_changes_nothing(console):
    client = console.logged_in("alice", "admin")
    for token in (None, "forged", csrf_token(console.logged_in("bob", "admin").get("/console/").text)):
        fields = {"enable": "1", "confirm": "yes", **({"csrf_token": token} if token else {})}
        response = client.post("/console/policies/eu-ai-act-art5", data=fields)
        assert response.status_code == 403 and "ConsoleCsrfRefused" in response.text
    assert not _pack_on(console, "eu-ai-act-art5")


def test_a_login_form_from_elsewhere_is_refused(console):
    console.account("alice", "admin")
    response = console.client().post("/console/login", data={"account": "alice", "password": PASSWORD, "csrf_token": "x"})
    assert response.status_code == 403 and "facegate_console=" not in response.headers.get("set-cookie", "")


def test_an_admin_toggles_a_pack_after_confirming_and_it_is_audited_as_from_the_cli(console):
    client = console.logged_in("alice", "admin")
    confirm = client.get("/console/policies/eu-ai-act-art5/confirm")
    assert confirm.status_code == 200 and "Yes, turn on eu-ai-act-art5" in confirm.text
    unconfirmed = post(client, "/console/policies/eu-ai-act-art5", {"enable": "1"})
    assert unconfirmed.status_code == 400 and not _pack_on(console, "eu-ai-act-art5")
    response = post(client, "/console/policies/eu-ai-act-art5", {"enable": "1", "confirm": "yes"})
    assert response.status_code == 303 and _pack_on(console, "eu-ai-act-art5")
    change = records(console.store)[-1]
    assert (change["operation"], change["summary"], change["key_id"], change["status"]) == (
        "facegate:PolicyEnable", {"pack": "eu-ai-act-art5"}, "console:alice", 200)
    assert "console:alice" in client.get("/console/policies").text
    assert _verified(console.store)


def test_a_new_keys_secret_is_shown_once_and_never_recorded(console):
    client = console.logged_in("alice", "admin")
    assert post(client, "/console/organizations", {"name": "metro", "sector": "law_enforcement"}).status_code == 303
    created = post(client, "/console/keys", {"organization": "metro", "purpose": "criminal_investigation", "name": "cctv"})
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    with console.store.reader() as tx:
        (key,) = tx.list_access_keys()
    secret = console.console.secrets.decrypt(tx_secret(console, key.access_key_id))
    assert secret in created.text and key.access_key_id in created.text
    listing = client.get("/console/organizations").text
    assert key.access_key_id in listing and secret not in listing
    assert secret not in str(records(console.store))
    made = records(console.store)[-1]
    assert (made["operation"], made["key_id"], made["summary"]["purpose"]) == ("facegate:AccessKeyCreate", "console:alice", "criminal_investigation")
    revoke = post(client, f"/console/keys/{key.access_key_id}/revoke", {"confirm": "yes"})
    assert revoke.status_code == 303 and records(console.store)[-1]["operation"] == "facegate:AccessKeyRevoke"
    assert _verified(console.store)


def tx_secret(console, key_id: str) -> bytes:  # type: ignore[no-untyped-def]
    with console.store.reader() as tx:
        return tx.access_key_secret(key_id)[1]


def test_logging_out_ends_the_session_on_the_server(console):
    client = console.logged_in("alice", "auditor")
    cookie = client.cookies.get("facegate_console")
    assert post(client, "/console/logout", {}).status_code == 303
    replay = console.client()
    replay.cookies.set("facegate_console", cookie, path="/console")
    assert replay.get("/console/").status_code == 303


def test_sessions_expire_when_idle_and_after_their_maximum_age(console):
    console.account("alice", "auditor")
    session = console_accounts.log_in(console.store, "alice", PASSWORD, "127.0.0.1", now=1_000_000.0)
    assert console_accounts.current(console.store, session.token, now=1_000_000.0 + SESSION_IDLE_SECONDS - 1) is not None
    assert console_accounts.current(console.store, session.token, now=1_000_000.0 + 2 * SESSION_IDLE_SECONDS) is None
    kept_busy = console_accounts.log_in(console.store, "alice", PASSWORD, "127.0.0.1", now=2_000_000.0)
    now = 2_000_000.0
    while now < 2_000_000.0 + SESSION_MAX_SECONDS - SESSION_IDLE_SECONDS:
        now += SESSION_IDLE_SECONDS - 60
        assert console_accounts.current(console.store, kept_busy.token, now=now) is not None
    assert console_accounts.current(console.store, kept_busy.token, now=2_000_000.0 + SESSION_MAX_SECONDS + 1) is None


def test_removing_an_account_or_changing_its_role_applies_at_its_next_request(console):
    client = console.logged_in("alice", "admin")
    console_accounts.set_role(console.store, "alice", "auditor")
    assert post(client, "/console/organizations", {"name": "x", "sector": "ngo"}).status_code == 403
    console_accounts.remove_account(console.store, "alice")
    assert client.get("/console/").status_code == 303


def test_a_login_never_redirects_to_another_site(console):
    console.account("alice", "auditor")
    client = console.client()
    page = client.get("/console/login?next=//evil.example/x")
    response = client.post("/console/login", data={"csrf_token": csrf_token(page.text), "account": "alice", "password": PASSWORD,
                                                   "next": "//evil.example/x"})
    assert response.headers["location"] == "/console/"


def test_account_changes_are_audited_and_replayed_by_verify(console):
    console.account("alice", "reviewer")
    console_accounts.set_role(console.store, "alice", "admin")
    console_accounts.set_password(console.store, "alice", "another long password")
    operations = [r["operation"] for r in records(console.store)]
    assert operations == ["facegate:ConsoleUserAdd", "facegate:ConsoleUserRole", "facegate:ConsoleUserPassword"]
    assert all("argon2" not in str(r) for r in records(console.store))
    assert _verified(console.store)


@pytest.mark.parametrize("statement, reported", [
    ("UPDATE console_accounts SET role = 'admin' WHERE name = 'audrey'", "has role 'admin'"),
    ("UPDATE console_accounts SET password_hash = (SELECT password_hash FROM console_accounts WHERE name = 'alice') "
     "WHERE name = 'audrey'", "has credential"),
    ("INSERT INTO console_accounts VALUES ('mallory', 'admin', 'x', 0)", "no audit record created it"),
])
def test_an_account_written_behind_the_audits_back_is_reported_by_verify(console, statement, reported):
    console.account("alice", "admin")
    console.account("audrey", "auditor")
    with console.store.engine.begin() as connection:
        connection.execute(text(statement))
    with console.store.snapshot() as tx:
        verdict = verify_database(tx)
    assert not verdict.ok and any(reported in p for p in verdict.problems), verdict.problems


def test_account_names_roles_and_short_passwords_are_refused(console):
    for name, role, password in [("", "admin", PASSWORD), ("a b", "admin", PASSWORD), ("bob", "root", PASSWORD), ("bob", "admin", "short")]:
        with pytest.raises(AccountError):
            console_accounts.add_account(console.store, name, role, password)


def test_pages_carry_a_content_security_policy_that_allows_nothing_from_elsewhere(console):
    client = console.logged_in("alice", "auditor")
    for path in ("/console/", "/console/audit", "/console/review", "/console/policies", "/console/organizations",
                 "/console/collections", "/console/accuracy"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert "http://" not in response.text.replace("http://HOST", "") and "https://" not in response.text, path
