"""Versioned schema migrations, applied in order inside one transaction when a store opens.

Each migration is a function of a connection; its position in ``MIGRATIONS`` is its
version (1-based). Append, never edit: a deployed database only replays what is new.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, inspect, select, text

from facegate.store import schema


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


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial, _v2_governance, _v3_index_log]


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
