"""Console accounts and sessions: who may read the oversight console, and who may change things.

Accounts are separate from API access keys. Three roles, each able to do what the one
before it can: an ``auditor`` reads everything and changes nothing, a ``reviewer`` also
records review decisions, an ``admin`` also creates and revokes keys, creates organisations
and turns policy packs on and off. Every change to an account is audited like a key's
(``facegate:ConsoleUser*``), with the SHA-256 of the password's argon2id hash instead of the
hash, so ``audit verify`` notices an account or a password hash written into the database
behind the audit's back (``audited_state.py``). Failed logins are audited and rate-limited
per account and per source address; a refused attempt never reaches the password check.

Sessions live in the database (so logging out, removing an account or changing its role
takes effect at the next request, in every worker) and expire after
``SESSION_IDLE_SECONDS`` without a request or ``SESSION_MAX_SECONDS`` after login.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from facegate.governance import audit
from facegate.store import console_accounts as accounts
from facegate.store.console_accounts import ConsoleAccount
from facegate.store.database import Store

ROLES = ("auditor", "reviewer", "admin")
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD_LENGTH = 12

SESSION_IDLE_SECONDS = 30 * 60
SESSION_MAX_SECONDS = 8 * 3600
_TOUCH_EVERY_SECONDS = 60.0
"""A session's last use is written at most once a minute: a page view is not a write."""

FAILURE_WINDOW_SECONDS = 15 * 60
MAX_FAILURES_PER_ACCOUNT = 5
MAX_FAILURES_PER_SOURCE = 20
"""Within ``FAILURE_WINDOW_SECONDS``: past either, logins for that account (or from that
address) are refused unchecked until the oldest failure leaves the window."""

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults
_UNKNOWN_ACCOUNT_HASH = _hasher.hash(secrets.token_urlsafe(16))
"""Checked against when the account does not exist, so that takes as long as a wrong password."""


class AccountError(ValueError):
    """An account change that cannot be made."""


class LoginRefused(Exception):
    """A failed login. ``throttled``: refused by the rate limit, the password unchecked."""

    def __init__(self, throttled: bool) -> None:
        super().__init__("too many failed logins; try again later" if throttled else "wrong account name or password")
        self.throttled = throttled


def actor(name: str) -> str:
    """Who a console action is recorded as in the audit log."""
    return f"console:{name}"


def credential(password_hash: str) -> str:
    """What the audit keeps of a password: SHA-256 of its argon2id hash (whose salt it lacks)."""
    return hashlib.sha256(password_hash.encode()).hexdigest()


def _session_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check(name: str, role: str | None = None, password: str | None = None) -> None:
    if not ACCOUNT_NAME.fullmatch(name):
        raise AccountError("an account name is 1 to 64 letters, digits and _ . @ -, starting with a letter or digit")
    if role is not None and role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password has at least {MIN_PASSWORD_LENGTH} characters")


def add_account(store: Store, name: str, role: str, password: str, by: str = audit.ADMINISTRATOR) -> None:
    _check(name, role, password)
    password_hash = _hasher.hash(password)
    with store.transaction() as tx:
        if accounts.get_account(tx, name) is not None:
            raise AccountError(f"console account {name!r} already exists")
        accounts.create_account(tx, name, role, password_hash, time.time())
        summary = {"name": name, "role": role, "credential": credential(password_hash)}
        audit.append(tx, audit.administrative("facegate:ConsoleUserAdd", summary, by))


def remove_account(store: Store, name: str, by: str = audit.ADMINISTRATOR) -> None:
    """Remove an account and end its sessions at once."""
    with store.transaction() as tx:
        if not accounts.delete_account(tx, name):
            raise AccountError(f"no console account {name!r}")
        audit.append(tx, audit.administrative("facegate:ConsoleUserRemove", {"name": name}, by))


def set_role(store: Store, name: str, role: str, by: str = audit.ADMINISTRATOR) -> None:
    """Change an account's role; its sessions carry the new role from their next request."""
    _check(name, role)
    with store.transaction() as tx:
        if not accounts.update_account(tx, name, role=role):
            raise AccountError(f"no console account {name!r}")
        audit.append(tx, audit.administrative("facegate:ConsoleUserRole", {"name": name, "role": role}, by))


def set_password(store: Store, name: str, password: str, by: str = audit.ADMINISTRATOR) -> None:
    """Set a new password and end the account's sessions."""
    _check(name, password=password)
    password_hash = _hasher.hash(password)
    with store.transaction() as tx:
        if not accounts.update_account(tx, name, password_hash=password_hash):
            raise AccountError(f"no console account {name!r}")
        accounts.delete_sessions_of(tx, name)
        summary = {"name": name, "credential": credential(password_hash)}
        audit.append(tx, audit.administrative("facegate:ConsoleUserPassword", summary, by))


def list_accounts(store: Store) -> list[ConsoleAccount]:
    with store.reader() as tx:
        return accounts.list_accounts(tx)


@dataclass(frozen=True)
class Session:
    """A logged-in account. ``token`` goes (signed) in the cookie; only its digest is stored."""

    token: str
    account: str
    role: str
    csrf_token: str

    def may(self, role: str) -> bool:
        """Whether this session's role includes ``role``'s rights."""
        return ROLES.index(self.role) >= ROLES.index(role)


def log_in(store: Store, name: str, password: str, source: str, now: float | None = None) -> Session:
    """A new session, or ``LoginRefused``. A failure is audited (``facegate:ConsoleLoginFailed``)
    and counted; a throttled attempt is neither (the caller sends it to the rejection log,
    which aggregates floods)."""
    now = time.time() if now is None else now
    name, source = name[:64], source[:64]
    since = now - FAILURE_WINDOW_SECONDS
    with store.reader() as tx:
        if (accounts.failures_since(tx, since, account=name) >= MAX_FAILURES_PER_ACCOUNT
                or accounts.failures_since(tx, since, source=source) >= MAX_FAILURES_PER_SOURCE):
            raise LoginRefused(throttled=True)
        account = accounts.get_account(tx, name)
    if not _verified(account, password):
        with store.transaction() as tx:
            accounts.add_failure(tx, name, source, now)
            accounts.prune_failures(tx, since)
            fields = audit.administrative("facegate:ConsoleLoginFailed", {"account": name, "source": source}, actor(name))
            audit.append(tx, {**fields, "decision": "deny", "status": 401, "error_type": "ConsoleLoginFailed"})
        raise LoginRefused(throttled=False)
    assert account is not None
    session = Session(secrets.token_urlsafe(32), account.name, account.role, secrets.token_urlsafe(32))
    with store.transaction() as tx:
        if _hasher.check_needs_rehash(account.password_hash):  # same password, stronger parameters: audited like any
            rehashed = _hasher.hash(password)
            accounts.update_account(tx, account.name, password_hash=rehashed)
            summary = {"name": account.name, "credential": credential(rehashed)}
            audit.append(tx, audit.administrative("facegate:ConsoleUserPassword", summary, actor(account.name)))
        accounts.clear_failures(tx, account.name)
        accounts.delete_sessions_idle_since(tx, now - SESSION_IDLE_SECONDS)
        accounts.create_session(tx, _session_digest(session.token), account.name, session.csrf_token, now)
        audit.append(tx, audit.administrative("facegate:ConsoleLogin", {"account": account.name, "source": source}, actor(account.name)))
    return session


def _verified(account: ConsoleAccount | None, password: str) -> bool:
    try:
        _hasher.verify(account.password_hash if account else _UNKNOWN_ACCOUNT_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    return account is not None


def current(store: Store, token: str, now: float | None = None) -> Session | None:
    """The live session behind a cookie's token, or None (unknown, expired, account gone)."""
    now = time.time() if now is None else now
    digest = _session_digest(token)
    with store.reader() as tx:
        found = accounts.get_session(tx, digest)
        account = accounts.get_account(tx, found.account) if found is not None else None
    if found is None:
        return None
    if account is None or now - found.last_seen > SESSION_IDLE_SECONDS or now - found.created_at > SESSION_MAX_SECONDS:
        with store.transaction() as tx:
            accounts.delete_session(tx, digest)
        return None
    if now - found.last_seen > _TOUCH_EVERY_SECONDS:
        with store.transaction() as tx:
            accounts.touch_session(tx, digest, now)
    return Session(token, account.name, account.role, found.csrf_token)


def log_out(store: Store, token: str) -> None:
    with store.transaction() as tx:
        accounts.delete_session(tx, _session_digest(token))
