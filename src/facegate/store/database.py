"""Opening a store: the SQLAlchemy engine, SQLite's durability settings, the index.

SQLite runs in WAL mode with ``synchronous=FULL``: a commit is on disk before the
request that made it is answered, so an acknowledged write survives ``kill -9``.
Writes are serialised by a process lock (SQLite allows one writer anyway, and this
spares us lock-upgrade deadlocks) and across processes by the database itself (see
``_queue_behind_other_processes``); PostgreSQL gets the same code through psycopg.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool

from facegate.store.face_index import FaceIndex
from facegate.store.index_snapshot import IndexSnapshots, LogMark, Snapshot
from facegate.store.group_commit import GroupCommit
from facegate.store.migrations import current_version, migrate
from facegate.store.pgvector_index import PgVectorIndex
from facegate.store.transaction import Transaction
from facegate.store.vector_column import has_vector_column


log = logging.getLogger(__name__)

before_commit: ContextVar[Callable[[Transaction], None] | None] = ContextVar("before_commit", default=None)
"""Per request (per thread of control): called once, inside the next write transaction."""


INDEX_LOG_KEEP_SECONDS = 86_400.0
"""How long index log entries are kept: far longer than any live process takes to catch up."""
SQLITE_POOL_CONNECTIONS = 8
"""SQLite connections each process keeps open for reuse. Opening one costs a file open and
four PRAGMAs, and every index access (each search) needs one; threads beyond this many
reading at once get a fresh connection, closed again when they return it, so none waits."""
INDEX_LOG_PRUNE_BATCH = 5_000
"""Log entries deleted per transaction when pruning: a day of bulk enrolment can leave
millions, and deleting them at once would hold the write lock for seconds."""
SNAPSHOT_POLL_SECONDS = 1.0
"""How often each process checks (one ``stat``) whether a new index snapshot was published."""
COMPACT_MIN_ROWS = 20_000
COMPACT_FRACTION = 0.05
"""A new snapshot is written once faces added or removed since the last one reach this many,
or this fraction of the snapshot's faces if more: the added ones are held privately by every
process (about 550 B each), the removed ones are still scanned."""
_WRITE_LOCK_KEY = 0x66616365  # "face": one advisory lock per database serialises facegate's writers
BUSY_TIMEOUT_MS = 10_000
"""How long any SQLite statement waits for a lock another process holds."""
WRITE_LOCK_POLL_SECONDS = 0.001
"""How often a write transaction asks again for SQLite's write lock while another process holds it."""


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'facegate.db').resolve()}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Run once per new connection (the pool's ``connect`` event), not per checkout."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _queue_behind_other_processes(connection: Connection) -> None:
    """Make a write transaction wait for writers in other processes before it reads.

    The process lock cannot see a CLI command or another server on the same database.
    Without this, two of them could both read the audit head and append the same sequence
    number (seen: a unique-key violation, which would have been a 500). SQLite takes its
    write lock up front with BEGIN IMMEDIATE (``_begin_immediate``); PostgreSQL takes an
    advisory lock that is released at commit.
    """
    if connection.dialect.name == "sqlite":
        _begin_immediate(connection)
    elif connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITE_LOCK_KEY})


def _begin_immediate(connection: Connection) -> None:
    """BEGIN IMMEDIATE, asked again every millisecond while another process holds the write
    lock, for up to ``BUSY_TIMEOUT_MS``. SQLite's own busy handler sleeps 1, 2, 5, 10 ... up to
    100 ms between tries, so a request queued behind another process's short write (a
    retention batch, a CLI command) waited up to 100 ms after the lock was free."""
    connection.exec_driver_sql("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except OperationalError as exc:
                if getattr(exc.orig, "sqlite_errorname", "") != "SQLITE_BUSY" or time.monotonic() > deadline:
                    raise
            time.sleep(WRITE_LOCK_POLL_SECONDS)
    finally:
        connection.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


class Store:
    """The database plus the face index that mirrors its committed embeddings."""

    def __init__(
        self, engine: Engine, dimension: int = 128, load_index: bool = True, index_dir: Path | None = None,
        vector_search: bool = True,
    ) -> None:
        """``load_index=False`` defers building the index to its first use: for a process
        that only migrates and manages keys (the parent of ``serve --workers``), which
        then never holds one. With an ``index_dir`` the index is kept there as a snapshot
        that every process on the node maps (``store/index_snapshot.py``). ``vector_search=False``
        keeps that exact index even where pgvector could search, whose graph can miss a face."""
        self.engine = engine
        self._dimension = dimension
        self._index: FaceIndex | None = None
        self._applied_seq = 0
        self._write_lock = threading.Lock()
        self._catch_up_lock = threading.Lock()
        self._audit_appends = GroupCommit(self.transaction)
        self._snapshots = None if index_dir is None else IndexSnapshots(index_dir)
        self._snapshot_marker: tuple[int, int] | None = None
        self._retired: FaceIndex | None = None  # the index before the last switch, dropped by the polling thread
        self._compacting = threading.Lock()
        self._closing = threading.Event()
        with engine.begin() as connection:
            migrate(connection)
            # On pgvector the database searches: no index to load here, no log to replay.
            self._vector_index = PgVectorIndex(engine, dimension) if vector_search and has_vector_column(connection) else None
        if load_index and self._vector_index is None:
            self._load_index()
        if self._snapshots is not None and self._vector_index is None:
            threading.Thread(target=self._watch_snapshots, name="index-snapshot-watch", daemon=True).start()

    def _load_index(self) -> None:
        """Map the node's snapshot and replay the log since it; without a valid one, build the
        index from the database and write the snapshot for the next process. The exclusive
        lock makes the other workers of a starting server wait for that one build, then map it."""
        if self._snapshots is None:
            self._index, self._applied_seq = self._index_from_database()
            return
        with self._snapshots.locked(exclusive=True):
            snapshot = self._valid_snapshot()
            if snapshot is not None and self._far_behind(snapshot):
                snapshot = None  # replaying that much of the log one change at a time is slower than a bulk rebuild
            if snapshot is None:
                index, applied = self._index_from_database()
                try:
                    self._snapshots.write(index, self._log_mark(applied), holding_lock=True)
                except OSError as exc:  # a full or read-only disk costs memory and start-up time, not service
                    log.warning("could not write the index snapshot to %s: %s", self._snapshots.directory, exc)
                    self._index, self._applied_seq = index, applied
                    return
                snapshot = self._valid_snapshot()
                assert snapshot is not None
            marker = self._snapshots.marker()
        self._use_snapshot(snapshot, marker)

    def _index_from_database(self) -> tuple[FaceIndex, int]:
        """Build the index from the faces table in bulk: each collection's block is sized
        once from a count, then filled a streamed batch at a time by block copies. The log
        position is read first: replaying changes the load already saw is harmless,
        because every change is idempotent."""
        index = FaceIndex(self._dimension)
        with self.engine.connect() as connection:
            tx = Transaction(connection)
            applied = max(tx.index_log_position())  # every change up to here, logged or pruned, is in the faces read below
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
        return index, applied

    def _log_mark(self, seq: int) -> LogMark:
        with self.engine.connect() as connection:
            entry = Transaction(connection).index_log_entry(seq)
        return LogMark(seq) if entry is None else LogMark(seq, entry[0], entry[1])

    def _valid_snapshot(self) -> Snapshot | None:
        """The node's snapshot, if it is of this database and the log still reaches back to it."""
        assert self._snapshots is not None
        snapshot = self._snapshots.open()
        if snapshot is None or snapshot.dimension != self._dimension:
            return None
        with self.engine.connect() as connection:
            tx = Transaction(connection)
            head, pruned = tx.index_log_position()
            entry = tx.index_log_entry(snapshot.mark.seq) if snapshot.mark.seq else None
        if max(head, pruned) < snapshot.mark.seq or pruned > snapshot.mark.seq:
            return None  # the database is behind the snapshot, or changes since it are gone from the log
        if entry is None:  # only pruning up to exactly the snapshot's position leaves nothing to recognise
            return snapshot if pruned == snapshot.mark.seq else None
        return snapshot if entry == (snapshot.mark.recorded_at, snapshot.mark.face_id) else None

    def _far_behind(self, snapshot: Snapshot) -> bool:
        """More changes were logged since the snapshot than it holds faces (and than a
        compaction would wait for): say a CLI bulk load while the server was down."""
        with self.engine.connect() as connection:
            head, _ = Transaction(connection).index_log_position()
        return head - snapshot.mark.seq > max(COMPACT_MIN_ROWS, snapshot.faces)

    def _use_snapshot(self, snapshot: Snapshot, marker: tuple[int, int] | None) -> None:
        """Make the snapshot's index current, brought up to date from the log first, so
        searches switch from the old index to a complete new one in one assignment.
        ``marker`` is the publication it was opened under (``IndexSnapshots.marker``)."""
        index, applied = snapshot.face_index(), snapshot.mark.seq
        with self.engine.connect() as connection:
            changes = Transaction(connection).index_changes_after(applied)
        if changes:
            index.apply(change for _, change in changes)
            applied = changes[-1][0]
        self._retired = self._index
        self._index, self._applied_seq, self._snapshot_marker = index, applied, marker

    @property
    def index(self) -> FaceIndex | PgVectorIndex:
        """The face index, first brought up to date with every committed change to the
        faces, whichever process made it (another server on the same PostgreSQL database,
        or a CLI command). When nothing changed this costs one query of two primary-key
        lookups on a pooled connection and one ``stat``, and takes no lock. On PostgreSQL
        with pgvector the index is the database's own (``PgVectorIndex``), always current."""
        if self._vector_index is not None:
            return self._vector_index
        self._catch_up()
        assert self._index is not None
        return self._index

    def _catch_up(self) -> None:
        """Replay what other transactions committed since this process last looked, or map
        the snapshot another process published.

        The "anything new?" check runs outside the lock, so concurrent searches do not queue
        behind one another when nothing changed (the common case). It is exact: every
        change gets a larger log sequence number than any before it, so a head at or below
        what was applied means nothing new, and pruning past it means changes were missed.
        """
        if self._index is not None:
            with self.reader() as tx:
                head, pruned = tx.index_log_position()
            applied = self._applied_seq
            if head <= applied and pruned <= applied:
                return
        with self._catch_up_lock:
            if self._index is None:
                self._load_index()
            else:
                self._replay_log()
        self._compact_when_worthwhile()

    def _switch_to_published_snapshot(self) -> None:
        """Move to the snapshot another process (or a compaction here) published, off the
        request path: the new planes are read in before searches see them (the first scan of
        an unread 256 MB plane faults in 65,000 pages), and the old index, which stays correct
        with the log replayed on top, serves until the swap."""
        if self._snapshots is None or self._index is None or self._snapshots.marker() == self._snapshot_marker:
            return
        with self._snapshots.locked(exclusive=False):  # nothing is published while it is held
            snapshot, marker = self._valid_snapshot(), self._snapshots.marker()
        if snapshot is None:
            return
        snapshot.read_in()
        with self._catch_up_lock:
            self._use_snapshot(snapshot, marker)

    def _watch_snapshots(self) -> None:
        """Each process of a node polls for a newly published snapshot, so that moving to it
        frees the faces it holds privately without a request paying for the move."""
        while not self._closing.wait(SNAPSHOT_POLL_SECONDS):
            # The old index is let go of here, a poll after the switch, when no search is still
            # reading it: its last reference unmaps a deleted snapshot's files and closes them,
            # and the kernel frees their pages right then (measured at 1M faces: a search that
            # happened to hold the last reference took 186 ms instead of 9).
            self._retired = None
            try:
                self._switch_to_published_snapshot()
            except Exception:  # noqa: BLE001 - the old index stays correct; try again at the next poll
                log.exception("could not move to the published index snapshot")

    def _replay_log(self) -> None:
        assert self._index is not None
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

    def _compact_when_worthwhile(self) -> None:
        """Write a new snapshot in the background once enough faces live outside the current
        one: faces added since it are held privately by every process, and removed ones
        still cost scan time."""
        index = self._index
        if self._snapshots is None or index is None:
            return
        if index.garbage < max(COMPACT_MIN_ROWS, COMPACT_FRACTION * index.base_rows()):
            return
        if self._compacting.acquire(blocking=False):
            threading.Thread(target=self._compact_and_release, name="index-snapshot", daemon=True).start()

    def _compact_and_release(self) -> None:
        try:
            self.compact_index()
        finally:
            self._compacting.release()
        self._switch_to_published_snapshot()
        self._compact_when_worthwhile()  # changes may have piled up while it was written

    def compact_index(self) -> str | None:
        """Write the index as it is now as the node's snapshot, unless another process is
        writing one; returns its name if published. Searches carry on meanwhile: the
        writer lock is held only to copy 5 B a face, and the process switches to the new
        snapshot at its next catch-up."""
        if self._snapshots is None or self._index is None:
            return None
        with self._snapshots.locked(exclusive=True, blocking=False, name="compact.lock") as taken:
            if not taken:
                return None
            with self._catch_up_lock:
                index, applied = self._index, self._applied_seq
            return self._snapshots.write(index, self._log_mark(applied))

    def prune_index_log(self, keep_seconds: float = INDEX_LOG_KEEP_SECONDS) -> int:
        """Drop index log entries older than ``keep_seconds`` (the server does this hourly).
        A snapshot older than that would then be useless, so one is written first when the
        index has changed since the current one."""
        if self._snapshots is not None and self._index is not None and self._applied_seq > self._snapshot_seq():
            self.compact_index()
        before, pruned = time.time() - keep_seconds, 0
        while True:  # in batches, so requests never queue long behind the write lock
            with self.transaction() as tx:
                deleted = tx.prune_index_log(before, INDEX_LOG_PRUNE_BATCH)
            pruned += deleted
            if deleted < INDEX_LOG_PRUNE_BATCH:
                return pruned

    def _snapshot_seq(self) -> int:
        assert self._snapshots is not None
        with self._snapshots.locked(exclusive=False):
            mark = self._snapshots.current_mark()
        return -1 if mark is None else mark.seq

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

    def append_audit_grouped(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Append an audit record (``audit_chain.append``'s fields and result) in a write
        transaction shared with the records concurrent callers append this way: one commit,
        one fsync for all (``store/group_commit.py``). It is committed when this returns;
        raises if it could not be. A write's own record belongs in the write's transaction."""
        return self._audit_appends.append(fields)

    @contextmanager
    def reader(self) -> Iterator[Transaction]:
        """Reads without taking the write lock (WAL lets readers run beside a writer). On
        PostgreSQL they run in autocommit: at its default READ COMMITTED every statement
        sees the latest commits either way, and without a transaction around them the
        driver sends no BEGIN and ROLLBACK, two of a read's four round trips."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="AUTOCOMMIT")
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
        """Release the database, first leaving the index's changes in a snapshot so the next
        start maps them instead of replaying them."""
        self._closing.set()
        if self._snapshots is not None and self._index is not None and self._index.garbage:
            with self._compacting:
                self.compact_index()
        self.engine.dispose()


class DatabaseNotFound(LookupError):
    """There is no facegate database at the URL, and none was to be made."""


class DatabaseUnreachable(DatabaseNotFound):
    """The database server at the URL does not answer (so whether one is there is unknown)."""


def open_store(
    url: str, create: bool = True, load_index: bool = True, index_dir: Path | None = None, vector_search: bool = True
) -> Store:
    """Open (creating and migrating as needed) the store at a SQLAlchemy URL. With
    ``create=False`` nothing is created: a missing database raises ``DatabaseNotFound``.
    With ``load_index=False`` the face index is built only when first used; with an
    ``index_dir`` it is kept there as a snapshot shared by the node's processes."""
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
    return Store(engine, load_index=load_index, index_dir=index_dir, vector_search=vector_search)


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
