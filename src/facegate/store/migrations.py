"""Versioned schema migrations, applied in order inside one transaction when a store opens.

Each migration is a function of a connection; its position in ``MIGRATIONS`` is its
version (1-based). Append, never edit: a deployed database only replays what is new.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from facegate.store import schema
from facegate.store.audit_chain import append
from facegate.store.transaction import Transaction
from facegate.store.vector_column import add_vector_column, create_vector_extension


def _v1_initial(connection: Connection) -> None:
    # The v1 access_keys table, without the purpose column v2 adds.
    from sqlalchemy import Column, Float, LargeBinary, MetaData, String, Table

    v1_keys = Table(
        "access_keys",
        MetaData(),
        Column("access_key_id", String(32), primary_key=True),
        Column("name", String(255), nullable=False),
        Column("secret_ciphertext", LargeBinary, nullable=False),
        Column("owner", String(255), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("revoked_at", Float),
    )
    v1_keys.create(connection)
    tables = [
        schema.collections,
        schema.collection_tags,
        schema.faces,
        schema.users,
        schema.idempotency_tokens,
    ]
    schema.metadata.create_all(connection, tables=tables)


def _v2_governance(connection: Connection) -> None:
    """Organisations, purposes, policy packs, the audit log and consent records."""
    connection.execute(text("ALTER TABLE access_keys ADD COLUMN purpose VARCHAR(64)"))
    tables = [schema.organizations, schema.policy_packs, schema.settings, schema.audit_log, schema.consents]
    schema.metadata.create_all(connection, tables=tables)


def _v3_index_log(connection: Connection) -> None:
    """The index change log that keeps several processes' in-memory indexes current."""
    schema.metadata.create_all(connection, tables=[schema.index_log])


def _v4_state_baseline(connection: Connection) -> None:
    """One audit record of the governance state as it stands (organisations, access keys,
    policy packs, the moratorium's end, consents), written once, when a database that holds
    any is upgraded. From here on every change to that state is audited with it, and
    ``facegate audit verify`` replays the records from this one to check the tables."""
    o, k, p, c, s = (t.c for t in (schema.organizations, schema.access_keys, schema.policy_packs, schema.consents, schema.settings))
    organizations = [
        {"name": r.name, "sector": r.sector, "flags": sorted(json.loads(r.flags))}
        for r in connection.execute(select(o.name, o.sector, o.flags).order_by(o.name))
    ]
    keys = [
        {"access_key_id": r.access_key_id, "organization": r.owner, "purpose": r.purpose, "name": r.name,
         "revoked": r.revoked_at is not None}
        for r in connection.execute(select(k.access_key_id, k.owner, k.purpose, k.name, k.revoked_at).order_by(k.access_key_id))
    ]
    packs = {r.name: bool(r.enabled) for r in connection.execute(select(p.name, p.enabled).order_by(p.name))}
    consents = [
        {"organization": r.organization, "consent_id": r.consent_id, "expires_at": r.expires_at, "ended": r.revoked_at is not None}
        for r in connection.execute(select(c.organization, c.consent_id, c.expires_at, c.revoked_at).order_by(c.organization, c.consent_id))
    ]
    # governance's MORATORIUM_END_SETTING (the store cannot import governance)
    moratorium = connection.execute(select(s.value).where(s.key == "moratorium_ends")).scalar_one_or_none()
    audited = connection.execute(select(schema.audit_log.c.seq).limit(1)).first() is not None
    if not (organizations or keys or packs or consents or moratorium is not None or audited):
        return  # a new database: its state will be audited as it is made
    append(Transaction(connection), {
        "key_id": "facegate-migration", "organization": None, "purpose": "administration",
        "operation": "facegate:StateBaseline", "collection": None, "decision": "allow", "policies": [], "status": 200,
        "error_type": None,
        "summary": {"organizations": organizations, "access_keys": keys, "policy_packs": packs,
                    "moratorium_ends": int(moratorium or 0), "consents": consents},
    })



def _v5_faces_by_age(connection: Connection) -> None:
    """An index on (collection, created_at), so the retention sweep reads only the faces
    that are due instead of scanning every face (v1 creates it on new databases)."""
    next(i for i in schema.faces.indexes if i.name == "ix_faces_created").create(connection, checkfirst=True)


def _v6_console(connection: Connection) -> None:
    """The oversight console: its accounts, sessions and failed logins, and the audit index
    (a cache of the hashed log the console filters, counts and queues reviews from; it
    fills from the log on first use, so this migration reads no records)."""
    tables = [schema.console_accounts, schema.console_sessions, schema.console_login_failures,
              schema.audit_facets, schema.audit_daily, schema.review_candidates]
    schema.metadata.create_all(connection, tables=tables)


def _v7_video_jobs(connection: Connection) -> None:
    """Durable stored-video jobs (StartFaceDetection, StartFaceSearch): see ``store/video_jobs.py``."""
    schema.metadata.create_all(connection, tables=[schema.video_jobs])


def _v8_vector_column(connection: Connection) -> None:
    """On PostgreSQL with pgvector, descriptors also in a ``vector`` column with an HNSW index,
    so searches run in the database and any number of servers share it with no index of
    their own (``store/vector_column.py``, ``store/pgvector_index.py``). Elsewhere: nothing."""
    if create_vector_extension(connection):
        add_vector_column(connection)


MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1_initial, _v2_governance, _v3_index_log, _v4_state_baseline, _v5_faces_by_age, _v6_console, _v7_video_jobs,
    _v8_vector_column,
]


def current_version(connection: Connection) -> int:
    if not inspect(connection).has_table("schema_version"):
        return 0
    return connection.execute(select(schema.schema_version.c.version)).scalar_one_or_none() or 0


def migrate(connection: Connection, target: int | None = None) -> int:
    """Apply pending migrations up to ``target`` (default: all); returns the new version."""
    target = len(MIGRATIONS) if target is None else target
    version = current_version(connection)
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema v{version} is newer than this facegate (v{len(MIGRATIONS)})")
    if version == 0:
        schema.schema_version.create(connection, checkfirst=True)
        connection.execute(schema.schema_version.insert().values(version=0))
    for number in range(version + 1, target + 1):
        MIGRATIONS[number - 1](connection)
        connection.execute(schema.schema_version.update().values(version=number))
    return max(version, target)
