"""Opening a store: the SQLAlchemy engine, SQLite's durability settings, the index.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk before the
request that made it is answered, so an acknowledged write survives ``kill -9``.
Writes are serialised by a process lock (SQLite allows one writer anyway, and this
spares us lock-upgrade deadlocks) and across processes by the database itself (see
``_queue_behind_other_processes``); PostgreSQL gets the same code through psycopg.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from facegate.store.face_index import FaceIndex
from facegate.store.migrations import current_version, migrate
from facegate.store.transaction import Transaction


before_commit: ContextVar[Callable[[Transaction], None] | None] = ContextVar("before_commit", default=None)
"""Per request (per thread of control): called once, inside the next write transaction."""


INDEX_LOG_KEEP_SECONDS = 86_400.0
"""How long index log entries are kept: far longer than any live process takes to catch up."""
SQLITE_POOL_CONNECTIONS = 8
"""SQLite connections each process keeps open for reuse. Opening one costs a file open and
four PRAGMAs, and every index access (each search) needs one; threads beyond this many
reading at once get a fresh connection, closed again when they return it, so none waits."""
_WRITE_LOCK_KEY = 0x66616365  # "face": one advisory lock per database serialises facegate's writers


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'facegate.db').resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Run once per new connection (the pool's ``connect`` event), not per checkout."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _queue_behind_other_processes(connection: Connection) -> None:
    """Make a write transaction wait for writers in other processes before it reads.

    The process lock cannot see a CLI command or another server on the same database.
    Without this, two of them could both read the audit head and append the same sequence
    number (seen: a unique-key violation, which would have been a 500). SQLite takes its
    write lock up front with BEGIN IMMEDIATE (waiting up to busy_timeout); PostgreSQL takes
    an advisory lock that is released at commit.
    """
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})


class Store:
    """The database plus the in-memory face index that mirrors its committed embeddings."""

    def __init__(self, engine: Engine, dimension: int = 128, load_index: bool = True) -> None:
        """``load_index=False`` defers building the index to its first use: for a process
        that only migrates and manages keys (the parent of ``serve --workers``), which
        then never holds one."""
        self.engine = engine
        self._dimension = dimension
        self._index: FaceIndex | None = None
        self._applied_seq = 0
        self._write_lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        with engine.begin() as connection:
            migrate(connection)
        if load_index:
            self._load_index()

    def _load_index(self) -> None:
        """Build the index from the faces table in bulk: each collection's matrix is sized
        once from a count, then filled a streamed batch at a time by block copies. The log
        position is read first: replaying changes the load already saw is harmless,
        because every change is idempotent."""
        index = FaceIndex(self._dimension)
        with self.engine.connect() as connection:
            tx = Transaction(connection)
            applied = tx.index_log_head()
            for pk, count in tx.face_counts().items():
                index.collection(pk).reserve(count)
            for batch in tx.face_vector_batches(self._dimension):
                pks = np.unique(batch.collection_pks)
                if len(pks) == 1:  # the usual case: the batch is one collection's
                    index.collection(int(pks[0])).extend(batch.face_ids, batch.vectors, batch.user_ids)
                    continue
                for pk in pks:
                    rows = np.flatnonzero(batch.collection_pks == pk)
                    index.collection(int(pk)).extend(
                        [batch.face_ids[i] for i in rows], batch.vectors[rows], [batch.user_ids[i] for i in rows]
                    )
        self._index, self._applied_seq = index, applied

    @property
    def index(self) -> FaceIndex:
        """The in-memory face index, first brought up to date with every committed change to
        the faces, whichever process made it (another server on the same PostgreSQL
        database, or a CLI command). When nothing changed this costs one query of two
        primary-key lookups on a pooled connection, and takes no lock."""
        self._catch_up()
        assert self._index is not None
        return self._index

    def _catch_up(self) -> None:
        """Replay what other transactions committed since this process last looked.

        The "anything new?" check runs outside the lock, so concurrent searches do not queue
        behind one another when nothing changed (the common case). It is exact: every
        change gets a larger log sequence number than any before it, so a head at or below
        what was applied means nothing new, and pruning past it means changes were missed.
        """
        if self._index is not None:
            with self.engine.connect() as connection:
                head, pruned = Transaction(connection).index_log_position()
            applied = self._applied_seq
            if head <= applied and pruned <= applied:
                return
        with self._catch_up_lock:
            if self._index is None:
                self._load_index()
                return
            with self.engine.connect() as connection:
                tx = Transaction(connection)
                # Idle for longer than the log is kept: the changes are gone, the faces are not.
                missed_pruned = tx.index_log_pruned_through() > self._applied_seq
                changes = [] if missed_pruned else tx.index_changes_after(self._applied_seq)
            if missed_pruned:
                self._load_index()
            elif changes:
                self._index.apply(change for _, change in changes)
                self._applied_seq = changes[-1][0]

    def prune_index_log(self, keep_seconds: float = INDEX_LOG_KEEP_SECONDS) -> int:
        """Drop index log entries older than ``keep_seconds`` (the server does this hourly)."""
        with self.transaction() as tx:
            return tx.prune_index_log(time.time() - keep_seconds)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of work. Its index changes reach the index only after commit.

        A hook set in ``before_commit`` (the governance gate's audit record) runs inside the
        first write transaction of the current request, so the write and its record commit
        together or not at all. Transactions are serialised, which also keeps the audit
        log's hash chain in order.
        """
        with self._write_lock:
            with self.engine.begin() as connection:
                _queue_behind_other_processes(connection)
                tx = Transaction(connection)
                yield tx
                hook = before_commit.get()
                if hook is not None:
                    before_commit.set(None)
                    hook(tx)
            if tx.index_changes and self._index is not None:  # an index not built yet will load them
                self._catch_up()

    @contextmanager
    def reader(self) -> Iterator[Transaction]:
        """Reads without taking the write lock (WAL lets readers run beside a writer)."""
        with self.engine.connect() as connection:
            yield Transaction(connection)

    @contextmanager
    def snapshot(self) -> Iterator[Transaction]:
        """Reads that all see the database as of one moment while writers carry on (a read
        transaction under WAL on SQLite, REPEATABLE READ on PostgreSQL): for checks that
        compare tables, such as the audit log with the state it explains."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN")
            else:
                connection.execution_options(isolation_level="REPEATABLE READ")
            yield Transaction(connection)

    def index_disagreements(self) -> list[str]:
        """Where the in-memory index and the database differ (empty when they agree)."""
        stored: dict[int, dict[str, tuple[np.ndarray, str | None]]] = {}
        with self.engine.connect() as connection:
            for pk, face_id, vector, user_id in Transaction(connection).all_face_vectors():
                stored.setdefault(pk, {})[face_id] = (vector, user_id)
        indexed = self.index.snapshot()  # caught up first, like any search
        problems = []
        for pk in stored.keys() | indexed.keys():
            db, mem = stored.get(pk, {}), indexed.get(pk, {})
            problems += [f"collection {pk}: face {f} only in the database" for f in db.keys() - mem.keys()]
            problems += [f"collection {pk}: face {f} only in the index" for f in mem.keys() - db.keys()]
            for face_id in db.keys() & mem.keys():
                if db[face_id][1] != mem[face_id][1] or not np.array_equal(db[face_id][0], mem[face_id][0]):
                    problems.append(f"collection {pk}: face {face_id} differs")
        return problems

    def close(self) -> None:
        self.engine.dispose()


class DatabaseNotFound(LookupError):
    """There is no facegate database at the URL, and none was to be made."""


class DatabaseUnreachable(DatabaseNotFound):
    """The database server at the URL does not answer (so whether one is there is unknown)."""


def open_store(url: str, create: bool = True, load_index: bool = True) -> Store:
    """Open (creating and migrating as needed) the store at a SQLAlchemy URL. With
    ``create=False`` nothing is created: a missing database raises ``DatabaseNotFound``.
    With ``load_index=False`` the face index is built only when first used."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            if not create and not Path(path).is_file():
                raise DatabaseNotFound(f"no database file {path}")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Pooled: a request reuses connections instead of opening one per index access.
        # Writes still commit with a full fsync, and a pooled reader sees every commit at
        # its next statement (no transaction stays open between checkouts: the pool rolls
        # back on return), so other processes' writes are seen as before.
        engine = create_engine(url, poolclass=QueuePool, pool_size=SQLITE_POOL_CONNECTIONS, max_overflow=-1,
                               connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    if not create:
        _require_facegate_schema(engine)
    return Store(engine, load_index=load_index)


def _require_facegate_schema(engine: Engine) -> None:
    try:
        with engine.connect() as connection:
            version = current_version(connection)
    except OperationalError as exc:
        engine.dispose()
        raise DatabaseUnreachable(f"cannot reach {engine.url.render_as_string(hide_password=True)}: {exc.orig}") from exc
    if version == 0:
        engine.dispose()
        raise DatabaseNotFound(f"{engine.url.render_as_string(hide_password=True)} holds no facegate database")
