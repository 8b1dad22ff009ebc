"""The faces' descriptors as a pgvector column, on PostgreSQL servers that have the extension.

Schema v8 adds ``faces.descriptor vector(128)`` beside the exact float32 ``embedding`` bytes
(still the truth, which searches re-rank from) and an HNSW index over it, but only where
``CREATE EXTENSION vector`` works: on SQLite, and on a PostgreSQL server without pgvector (or
without the right to create it), the schema and behaviour stay as they were. Whether the
column exists is then the one fact the rest of the store asks (``has_vector_column``).
Descriptors are unit length, so the index orders by inner product (``vector_ip_ops``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Column, Connection, MetaData, Table, cast, select, text
from sqlalchemy.types import UserDefinedType

from facegate.store import schema

DIMENSION = 128
"""The column's dimension: every bundled face model's descriptor length."""

SEARCH_INDEX = "ix_faces_descriptor_hnsw"
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
"""Graph links per node and candidates kept while building (pgvector's defaults: 16 and 64).
A face with few near neighbours (a real face among distractors unlike it, the case that
matters in identification) is reached only through a well-linked graph. Measured at 100k
faces with real sface mates among synthetic clustered distractors (bench/pgvector_scale.py):
at m=16, ef_construction=64 recall@1 was 0.46 at ef_search 100 and 0.885 at 1000; at 32 and
200, 0.92 and 1.0, for a build about 6x as long; at 300k, 0.895 at ef_search 1000."""
BUILD_MEMORY = "1GB"
"""``maintenance_work_mem`` for building the index: a graph that fits is built in memory,
several times faster than one that spills. The graph takes about 1 kB a face at m=32
(measured: 103 MB at 100k faces), so this holds about a million."""

BACKFILL_BATCH = 2_000
_CACHE_KEY = "facegate_has_vector_column"


class Vector(UserDefinedType[np.ndarray]):
    """pgvector's ``vector(n)``, bound from float32 arrays as text (``[x,y,...]``), which
    pgvector parses with ``strtof``: each value is written as the shortest decimal that
    reads back as the same double, and a float32 held as a double reads back bit for bit."""

    cache_ok = True

    def __init__(self, dimension: int = DIMENSION) -> None:
        self.dimension = dimension

    def get_col_spec(self, **_: Any) -> str:
        return f"vector({self.dimension})"

    def bind_processor(self, dialect: Any) -> Any:
        return lambda value: None if value is None else vector_literal(value)

    def bind_expression(self, bindvalue: Any) -> Any:
        return cast(bindvalue, self)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        return lambda value: None if value is None else parse_vector(value)


faces_with_descriptor = Table(
    "faces", MetaData(), *(c._copy() for c in schema.faces.columns), Column("descriptor", Vector(DIMENSION))
)
"""``schema.faces`` with the v8 column, for writes on a database that has it."""


def vector_literal(vector: np.ndarray) -> str:
    return "[" + ",".join(map(repr, np.asarray(vector, dtype=np.float32).astype(np.float64).tolist())) + "]"


def parse_vector(value: str) -> np.ndarray:
    return np.array(value.strip("[]").split(","), dtype=np.float32)


def has_vector_column(connection: Connection) -> bool:
    """True when this database keeps descriptors in ``faces.descriptor`` (schema v8 found
    pgvector). Asked once per pooled connection, then remembered with it: the column is made
    by the migration every process runs before it writes a face, and never dropped."""
    if connection.dialect.name != "postgresql":
        return False
    known = connection.info.get(_CACHE_KEY)
    if known is None:
        known = connection.execute(text(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('faces') "
            "AND attname = 'descriptor' AND NOT attisdropped)"
        )).scalar_one()
        connection.info[_CACHE_KEY] = known
    return bool(known)


def create_vector_extension(connection: Connection) -> bool:
    """``CREATE EXTENSION IF NOT EXISTS vector`` in a savepoint; False (and the transaction
    unharmed) when the server has no pgvector or this role may not create it."""
    if connection.dialect.name != "postgresql":
        return False
    savepoint = connection.begin_nested()
    try:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
    except Exception:  # noqa: BLE001 - any refusal (not installed, not permitted) means "no pgvector"
        savepoint.rollback()
        return False
    savepoint.commit()
    return True


def add_vector_column(connection: Connection) -> None:
    """The v8 change on a database with pgvector: the column, filled from the exact bytes of
    every stored face, then made NOT NULL (so no write can leave a face unsearchable), then
    the HNSW index over it."""
    connection.execute(text(f"ALTER TABLE faces ADD COLUMN descriptor vector({DIMENSION})"))
    connection.info.pop(_CACHE_KEY, None)  # this connection may have been asked before the column was there
    f = schema.faces.c
    update = text(f"UPDATE faces SET descriptor = CAST(:descriptor AS vector({DIMENSION})) WHERE face_id = :face_id")
    after = ""
    while True:  # by primary key, a batch at a time, so memory stays flat at any number of faces
        rows = connection.execute(
            select(f.face_id, f.embedding).where(f.face_id > after).order_by(f.face_id).limit(BACKFILL_BATCH)
        ).all()
        if not rows:
            break
        connection.execute(update, [{"face_id": r.face_id, "descriptor": vector_literal(np.frombuffer(r.embedding, dtype="<f4"))}
                                    for r in rows])
        after = rows[-1].face_id
    connection.execute(text("ALTER TABLE faces ALTER COLUMN descriptor SET NOT NULL"))
    create_search_index(connection)


def create_search_index(connection: Connection) -> None:
    """Build the HNSW index (if missing). Building once over many faces is far faster than
    growing it a face at a time, so a bulk load may drop it first (``drop_search_index``)."""
    connection.execute(text(f"SET LOCAL maintenance_work_mem = '{BUILD_MEMORY}'"))
    connection.execute(text(
        f"CREATE INDEX IF NOT EXISTS {SEARCH_INDEX} ON faces USING hnsw (descriptor vector_ip_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
    ))


def drop_search_index(connection: Connection) -> None:
    connection.execute(text(f"DROP INDEX IF EXISTS {SEARCH_INDEX}"))
