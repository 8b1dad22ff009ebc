"""The console's accounts, sessions and recent failed logins, in the caller's transaction.

Passwords arrive here already hashed (``governance/console_accounts.py`` hashes them and
audits every change); sessions are stored by the SHA-256 of their id, so reading the
database does not hand anyone a live session. Times are epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, select, update

from facegate.store import schema
from facegate.store.transaction import Transaction


@dataclass(frozen=True)
class ConsoleAccount:
    name: str
    role: str
    password_hash: str
    created_at: float


@dataclass(frozen=True)
class ConsoleSession:
    account: str
    csrf_token: str
    created_at: float
    last_seen: float


def create_account(tx: Transaction, name: str, role: str, password_hash: str, now: float) -> None:
    tx.connection.execute(insert(schema.console_accounts).values(name=name, role=role, password_hash=password_hash, created_at=now))


def get_account(tx: Transaction, name: str) -> ConsoleAccount | None:
    row = tx.connection.execute(select(schema.console_accounts).where(schema.console_accounts.c.name == name)).first()
    return None if row is None else ConsoleAccount(row.name, row.role, row.password_hash, row.created_at)


def list_accounts(tx: Transaction) -> list[ConsoleAccount]:
    rows = tx.connection.execute(select(schema.console_accounts).order_by(schema.console_accounts.c.name))
    return [ConsoleAccount(r.name, r.role, r.password_hash, r.created_at) for r in rows]


def update_account(tx: Transaction, name: str, role: str | None = None, password_hash: str | None = None) -> bool:
    values = {k: v for k, v in (("role", role), ("password_hash", password_hash)) if v is not None}
    done = tx.connection.execute(update(schema.console_accounts).where(schema.console_accounts.c.name == name).values(**values))
    return done.rowcount > 0


def delete_account(tx: Transaction, name: str) -> bool:
    done = tx.connection.execute(delete(schema.console_accounts).where(schema.console_accounts.c.name == name))
    delete_sessions_of(tx, name)
    return done.rowcount > 0


# -- sessions ----------------------------------------------------------------------------------

def create_session(tx: Transaction, session_digest: str, account: str, csrf_token: str, now: float) -> None:
    tx.connection.execute(insert(schema.console_sessions).values(
        session_digest=session_digest, account=account, csrf_token=csrf_token, created_at=now, last_seen=now))


def get_session(tx: Transaction, session_digest: str) -> ConsoleSession | None:
    s = schema.console_sessions.c
    row = tx.connection.execute(select(schema.console_sessions).where(s.session_digest == session_digest)).first()
    return None if row is None else ConsoleSession(row.account, row.csrf_token, row.created_at, row.last_seen)


def touch_session(tx: Transaction, session_digest: str, now: float) -> None:
    s = schema.console_sessions.c
    tx.connection.execute(update(schema.console_sessions).where(s.session_digest == session_digest).values(last_seen=now))


def delete_session(tx: Transaction, session_digest: str) -> None:
    tx.connection.execute(delete(schema.console_sessions).where(schema.console_sessions.c.session_digest == session_digest))


def delete_sessions_of(tx: Transaction, account: str) -> None:
    tx.connection.execute(delete(schema.console_sessions).where(schema.console_sessions.c.account == account))


def delete_sessions_idle_since(tx: Transaction, before: float) -> None:
    tx.connection.execute(delete(schema.console_sessions).where(schema.console_sessions.c.last_seen < before))


# -- failed logins -----------------------------------------------------------------------------

def add_failure(tx: Transaction, account: str, source: str, now: float) -> None:
    tx.connection.execute(insert(schema.console_login_failures).values(account=account, source=source, at=now))


def failures_since(tx: Transaction, since: float, account: str | None = None, source: str | None = None) -> int:
    """Failed logins at or after ``since`` for ``account`` or from ``source`` (one of them)."""
    f = schema.console_login_failures.c
    who = f.account == account if account is not None else f.source == source
    return tx.connection.execute(select(func.count()).where(and_(who, f.at >= since))).scalar_one()


def clear_failures(tx: Transaction, account: str) -> None:
    tx.connection.execute(delete(schema.console_login_failures).where(schema.console_login_failures.c.account == account))


def prune_failures(tx: Transaction, before: float) -> None:
    tx.connection.execute(delete(schema.console_login_failures).where(schema.console_login_failures.c.at < before))
