"""Index snapshots: the face index written to disk once, memory-mapped by every process on a node.

Without them every ``serve`` process rebuilt the index from the database at start (6-21 s at
1M faces) and held its own copy (2.6 GB for three processes at 1M). A snapshot holds every
collection's faces as of one position in the index log, as flat arrays in ``.npy`` files
(``numpy.load(mmap_mode="r")`` maps them without reading). Processes map the same files, so
the kernel keeps one copy of their pages in its page cache whatever the number of workers,
and each process then replays the log from the snapshot's position, as it would after any
other process's write.

Layout of ``<index dir>``:
- ``snapshot-<seq>-<token>/``: ``manifest.json`` and the arrays, all collections concatenated
  (each collection's rows are a range named in the manifest);
- ``CURRENT``: the name of the snapshot to use, replaced atomically (write, fsync, rename);
- ``lock``: ``flock``ed shared while a process maps a snapshot, exclusive to publish one or
  to build the first (so the other workers wait and map it instead of building their own);
- ``compact.lock``: held by the one process writing a new snapshot.

A snapshot is trusted only if the database still holds the log entry at its position, with the
same time and face id: a restored, replaced or foreign database fails that check, and the index
is rebuilt from the database instead (``Store``).
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.store.cold_plane import ColdPlane
from facegate.store.face_index import FACE_ID_DTYPE, NO_USER, BaseRows, CollectionIndex, FaceIndex, Rows
from facegate.store.product_codes import APPROXIMATE_FROM, ProductCodes, ProductCodesBuilder, training_rows

FORMAT = 3
"""3: with product codes for large collections (2 had none; 1 held bfloat16 halves; such a snapshot is rebuilt)."""
ARRAYS = ("codes", "scales", "vectors", "face_ids", "users", "sorted_ids", "sorted_rows", "user_names")
COLD = ("vectors", "face_ids")
"""Planes read with ``pread`` rather than mapped (``ColdPlane``)."""
READ_IN_PAGES = 256
"""Pages (1 MB) touched between pauses when reading a snapshot in ahead of a switch."""
CHUNK_ROWS = 65_536
"""Rows copied at a time while writing, so a snapshot of any size needs little extra memory."""


@dataclass(frozen=True)
class LogMark:
    """A position in the index log, with what the entry there holds (to recognise the database)."""

    seq: int
    recorded_at: float | None = None
    face_id: str | None = None


@dataclass(frozen=True)
class Snapshot:
    name: str
    mark: LogMark
    dimension: int
    collections: dict[int, BaseRows]

    def face_index(self) -> FaceIndex:
        return FaceIndex(self.dimension, {pk: CollectionIndex(self.dimension, base) for pk, base in self.collections.items()})

    @property
    def faces(self) -> int:
        return sum(base.rows.count for base in self.collections.values())

    def read_in(self) -> None:
        """Touch every page of the int8 codes and scales, so the first search after a switch does
        not fault them in one by one (about 300 ms at 1M faces, measured). Collections searched
        through product codes need them too: their re-rank gathers 1,024 rows a search, which had
        mapped the whole plane by the end of a 220-search benchmark at 1M and at 10M. A few
        megabytes at a time, pausing between: a page fault taken while holding the GIL stalls
        every other thread, searches included."""
        for base in self.collections.values():
            for plane in (base.rows.codes, base.rows.scales):
                pages = plane.reshape(-1)[:: max(1, mmap.PAGESIZE // plane.itemsize)]
                for start in range(0, len(pages), READ_IN_PAGES):
                    np.add.reduce(pages[start : start + READ_IN_PAGES], dtype=np.float64)
                    time.sleep(0.001)


@dataclass(frozen=True)
class _Captured:
    """One collection as of the capture: its blocks, with private copies of what changes in place."""

    blocks: list[Rows]
    alive: list[np.ndarray]
    users: list[np.ndarray]
    index: CollectionIndex


class IndexSnapshots:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def locked(self, exclusive: bool, blocking: bool = True, name: str = "lock") -> Iterator[bool]:
        """``flock`` on a lock file in the directory; yields whether it was taken (always, if blocking).
        Each call opens the file anew, so threads of one process exclude each other too."""
        with open(self.directory / name, "a+b") as handle:
            flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def marker(self) -> tuple[int, int] | None:
        """Changes whenever a snapshot is published: one ``stat``, cheap enough for every search."""
        try:
            status = os.stat(self.directory / "CURRENT")
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns

    def current_mark(self) -> LogMark | None:
        """The log position of the current snapshot, from its manifest alone: ``open`` reads
        every block of product codes (320 MB at 10M faces), too much to learn a position.
        Call under ``locked``, as ``open``."""
        try:
            manifest = json.loads((self.directory / (self.directory / "CURRENT").read_text().strip() / "manifest.json").read_text())
            return LogMark(**manifest["mark"]) if manifest.get("format") == FORMAT else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def open(self) -> Snapshot | None:
        """The current snapshot, memory-mapped, or None if there is none or it cannot be read.
        Call under ``locked(exclusive=False)`` (or exclusive), so it is not deleted meanwhile."""
        try:
            name = (self.directory / "CURRENT").read_text().strip()
            folder = self.directory / name
            manifest = json.loads((folder / "manifest.json").read_text())
            if manifest.get("format") != FORMAT:
                return None
            arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r") for key in ARRAYS}
            for key in COLD:
                arrays[key] = ColdPlane(folder / f"{key}.npy", arrays[key])
            collections = {int(pk): _base_rows(folder, arrays, entry) for pk, entry in manifest["collections"].items()}
        except (OSError, ValueError, KeyError, RuntimeError):  # RuntimeError: faiss could not read product codes
            return None
        _advise(arrays["codes"], mmap.MADV_WILLNEED)
        _advise(arrays["scales"], mmap.MADV_WILLNEED)
        return Snapshot(name, LogMark(**manifest["mark"]), int(manifest["dimension"]), collections)

    def write(self, index: FaceIndex, mark: LogMark, holding_lock: bool = False) -> str | None:
        """Write ``index`` (whose state is as of ``mark``) as a new snapshot and publish it,
        unless one at a later position was published meanwhile. Returns its name if published.
        ``holding_lock``: the caller already holds ``locked(exclusive=True)``.

        Holding the index's writer lock, only the flags and user codes that change in place are
        copied (5 B a face); the planes are copied from the blocks afterwards, without a lock,
        because rows below a block's count never change."""
        with index.lock:
            captured = {pk: _capture(ci) for pk, ci in index.collections().items()}
        name = f"snapshot-{mark.seq:012d}-{uuid.uuid4().hex[:8]}"
        staging = self.directory / f".{name}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            manifest = _write_arrays(staging, captured, index.dimension)
            manifest.update(format=FORMAT, dimension=index.dimension, mark=asdict(mark))
            (staging / "manifest.json").write_text(json.dumps(manifest))
            _fsync_tree(staging)
            if holding_lock:
                return self._publish(staging, name, mark)
            with self.locked(exclusive=True):
                return self._publish(staging, name, mark)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _publish(self, staging: Path, name: str, mark: LogMark) -> str | None:
        """Make ``staging`` the current snapshot (under the exclusive lock) and delete the others."""
        current = self.current_mark()
        if current is not None and current.seq > mark.seq:
            return None
        staging.rename(self.directory / name)
        pointer = self.directory / ".CURRENT.tmp"
        with open(pointer, "w") as handle:
            handle.write(name)
            handle.flush()
            os.fsync(handle.fileno())
        pointer.replace(self.directory / "CURRENT")
        _fsync_directory(self.directory)
        for old in self.directory.glob("snapshot-*"):
            if old.name != name:  # processes still mapping it keep its pages until they let go
                shutil.rmtree(old, ignore_errors=True)
        return name


def _capture(index: CollectionIndex) -> _Captured:
    blocks = index.blocks()
    return _Captured(blocks, [b.alive[: b.count].copy() for b in blocks], [b.users[: b.count].copy() for b in blocks], index)


def _write_arrays(folder: Path, captured: dict[int, _Captured], dimension: int) -> dict[str, Any]:
    """Every live face of every collection into the arrays of ``folder``; returns the manifest's
    ``collections`` (row and user-name ranges, and each collection's largest quantisation error)."""
    live = {pk: [np.flatnonzero(alive) for alive in c.alive] for pk, c in captured.items()}
    total = sum(len(rows) for per_block in live.values() for rows in per_block)
    names: list[bytes] = []
    codes = np.empty(total, np.int32)
    face_ids = np.empty(total, FACE_ID_DTYPE)  # for the sorted id table: 36 B a face while writing
    out = {
        "codes": _PlaneWriter(folder / "codes.npy", np.int8, (total, dimension)),
        "scales": _PlaneWriter(folder / "scales.npy", np.float32, (total,)),
        "vectors": _PlaneWriter(folder / "vectors.npy", np.float32, (total, dimension)),
        "face_ids": _PlaneWriter(folder / "face_ids.npy", FACE_ID_DTYPE, (total,)),
    }
    entries: dict[str, Any] = {}
    at = 0
    for pk, c in captured.items():
        start, names_start = at, len(names)
        product_codes = _product_codes_builder(c.blocks, live[pk])
        for block, rows, users in zip(c.blocks, live[pk], c.users):
            for first in range(0, len(rows), CHUNK_ROWS):
                chunk = rows[first : first + CHUNK_ROWS]
                end = at + len(chunk)
                vectors = block.exact(chunk)
                out["codes"].append(block.codes[chunk])
                out["scales"].append(block.scales[chunk])
                out["vectors"].append(vectors)
                face_ids[at:end] = block.face_ids[chunk]
                out["face_ids"].append(face_ids[at:end])
                codes[at:end] = _renumbered(users[chunk], c.index, names, names_start)
                if product_codes is not None:
                    product_codes.add(vectors)
                at = end
        entries[str(pk)] = {"start": start, "end": at, "names_start": names_start, "names_end": len(names),
                            "max_error": c.index.max_error,
                            "product_codes": [] if product_codes is None else product_codes.save(folder, f"codes-{pk}")}
    order = np.empty(total, np.int32)
    for entry in entries.values():
        start, end = entry["start"], entry["end"]
        order[start:end] = np.argsort(face_ids[start:end], kind="stable")
    for plane in out.values():
        plane.close()
    np.save(folder / "users.npy", codes)
    np.save(folder / "sorted_rows.npy", order)
    sorted_ids = _PlaneWriter(folder / "sorted_ids.npy", FACE_ID_DTYPE, (total,))
    for entry in entries.values():
        start, end = entry["start"], entry["end"]
        for first in range(start, end, CHUNK_ROWS):  # a chunk at a time: each gather holds the GIL
            sorted_ids.append(face_ids[start:end][order[first:min(first + CHUNK_ROWS, end)]])
    sorted_ids.close()
    np.save(folder / "user_names.npy", np.array(names or [b""], dtype="S128"))
    return {"collections": entries}


class _PlaneWriter:
    """A plane's ``.npy`` file written front to back with ``write``. While the kernel flushes
    the snapshot's gigabytes it holds back whoever dirties more pages; in ``write`` that wait
    happens without the GIL, where a store into a mapping of the file (or its ``msync``) waits
    holding it, and every search of the process with it (measured at 10M faces, planes written
    through mappings: searches beside the writer stalled for 291-663 ms)."""

    def __init__(self, path: Path, dtype: Any, shape: tuple[int, ...]) -> None:
        self._dtype, self._rows, self._written = np.dtype(dtype), shape[0], 0
        self._handle = path.open("wb")
        header = {"descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self._handle, header)

    def append(self, rows: np.ndarray) -> None:
        self._handle.write(memoryview(np.ascontiguousarray(rows, dtype=self._dtype)).cast("B"))
        self._written += len(rows)

    def close(self) -> None:
        self._handle.close()
        if self._written != self._rows:  # a short plane must never be published
            raise RuntimeError(f"{self._handle.name}: {self._written} rows written, {self._rows} declared")


def _product_codes_builder(blocks: list[Rows], live: list[np.ndarray]) -> ProductCodesBuilder | None:
    """For a collection of ``APPROXIMATE_FROM`` live faces or more, a builder trained on a
    sample of them (``training_rows``)."""
    total = sum(len(rows) for rows in live)
    if total < APPROXIMATE_FROM:
        return None
    picked = training_rows(total)
    bounds = np.cumsum([0] + [len(rows) for rows in live])
    sample = [block.exact(rows[picked[(picked >= low) & (picked < high)] - low])
              for block, rows, low, high in zip(blocks, live, bounds[:-1], bounds[1:])]
    return ProductCodesBuilder(np.concatenate(sample))


def _renumbered(codes: np.ndarray, index: CollectionIndex, names: list[bytes], names_start: int) -> np.ndarray:
    """User codes local to the snapshot's name list: each face with a user gets the name's
    position, counted from the collection's first name (``names_start``)."""
    out = np.full(len(codes), NO_USER, np.int32)
    for i in np.flatnonzero(codes != NO_USER):
        name = index.user_name(int(codes[i]))
        assert name is not None
        names.append(name.encode())
        out[i] = len(names) - 1 - names_start
    return out


def _base_rows(folder: Path, arrays: dict[str, np.ndarray], entry: dict[str, Any]) -> BaseRows:
    start, end = entry["start"], entry["end"]
    count = end - start
    rows = Rows(arrays["codes"][start:end], arrays["scales"][start:end], arrays["vectors"].rows(start, end),
                arrays["face_ids"].rows(start, end),
                np.array(arrays["users"][start:end]), np.ones(count, bool), count)
    return BaseRows(rows, arrays["sorted_ids"][start:end], arrays["sorted_rows"][start:end],
                    arrays["user_names"][entry["names_start"] : entry["names_end"]], float(entry["max_error"]),
                    ProductCodes.load(folder, entry["product_codes"]) if entry["product_codes"] else None)


def _advise(array: np.ndarray, advice: int) -> None:
    """Every search scans the codes and scales from end to end: have them read in before the first."""
    mapped = getattr(array, "_mmap", None)
    if mapped is not None and len(array):
        mapped.madvise(advice)


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    _fsync_directory(folder)


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
