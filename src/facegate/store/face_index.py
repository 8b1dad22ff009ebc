"""The search index: exact, vectorised nearest-neighbour search per collection.

The database stays the source of truth; this is a cache of its embeddings laid out for SIMD.
It is built once at start (or memory-mapped from a snapshot, ``store/index_snapshot.py``) and
then changed only by committed transactions (see ``Store.transaction``), so searches never see
uncommitted faces, never go stale and never trigger a rebuild on the request path.
Descriptors are unit length, so Euclidean distance is ``sqrt(2 - 2 * dot)``: one SIMD pass of
int8 dot products over quantised codes scores a whole collection, and the few faces it cannot
rule out are re-ranked exactly from their float32 vectors.

Searches take no lock. Rows are never moved or overwritten while the index is in use: a new
face is written past the row count searches read, which is published afterwards; a removed
face is only flagged dead; a full block is replaced by a bigger copy. So a search that runs
beside a change sees the index either before or after it, never a torn row.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import simsimd

from facegate.store.cold_plane import ColdPlane
from facegate.store.product_codes import CANDIDATES, ProductCodes

FACE_ID_DTYPE = "S36"
"""Face ids as fixed-width ASCII (Rekognition's FaceId is a 36-character UUID)."""
NO_USER = -1
"""The user code of a face that belongs to no user."""


Found = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Faces found in one block: (face ids, exact distances, user codes)."""


@dataclass(frozen=True)
class Neighbour:
    face_id: str
    distance: float
    user_id: str | None


class Rows(NamedTuple):
    """A block of faces, in parallel arrays of at least ``count`` rows.

    Searches scan ``codes``: each vector quantised to int8 against its own ``scale`` (its
    largest component maps to 127), 128 B a face at 128 dimensions, scored with simsimd's
    SIMD int8 dot products. ``vectors`` holds the float32 vectors themselves, read only for the
    re-rank and ``vector()``. In a snapshot the vectors and the face ids stay on disk, read a
    few rows at a time (``ColdPlane``), so a node holds about 150 B a face in RAM. (Measured on
    2026-11-28 at 1M faces, one thread: the int8 scan took 6.9 ms against 8.8 ms for the
    bfloat16 halves it replaced, which held 256 B a face; float16 took 16.7 ms, float32 BLAS 31 ms.)"""

    codes: np.ndarray  # (capacity, dimension) int8
    scales: np.ndarray  # (capacity,) float32: a row's vector is about scale * codes
    vectors: np.ndarray | ColdPlane  # (capacity, dimension) float32; a snapshot's is read from disk
    face_ids: np.ndarray | ColdPlane  # (capacity,) FACE_ID_DTYPE
    users: np.ndarray  # (capacity,) int32 codes into the collection's user names, NO_USER for none
    alive: np.ndarray  # (capacity,) bool: False once removed
    count: int

    @classmethod
    def empty(cls, capacity: int, dimension: int) -> Rows:
        return cls(np.empty((capacity, dimension), np.int8), np.empty(capacity, np.float32),
                   np.empty((capacity, dimension), np.float32), np.empty(capacity, FACE_ID_DTYPE),
                   np.empty(capacity, np.int32), np.zeros(capacity, bool), 0)

    def exact(self, rows: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of ``rows``."""
        return np.asarray(self.vectors[rows], dtype=np.float32)

    def grown(self, capacity: int) -> Rows:
        """A copy with room for ``capacity`` rows, the filled ones kept."""
        bigger = Rows.empty(capacity, self.codes.shape[1])
        for old, new in zip(self[:6], bigger[:6]):
            new[: self.count] = old[: self.count]
        return bigger._replace(count=self.count)


class Scan(NamedTuple):
    """A block to scan with its largest quantisation error, and which of its rows (None: all)."""

    block: Rows
    max_error: float
    rows: np.ndarray | None = None  # ascending


@dataclass(frozen=True)
class BaseRows:
    """A collection's faces as of a snapshot: ``rows`` maps the snapshot's planes (shared by
    every process on the node through the page cache) with private ``users`` and ``alive``
    arrays, so later changes to users and removals stay in this process. Face ids are found
    by binary search over ``sorted_ids`` rather than a dict, which would cost about 100 B a face."""

    rows: Rows
    sorted_ids: np.ndarray  # the face ids, sorted
    sorted_rows: np.ndarray  # the row of each of sorted_ids
    user_names: np.ndarray  # bytes, indexed by user code
    max_error: float
    approximate: ProductCodes | None = None  # product codes of the rows, for collections of APPROXIMATE_FROM faces or more

    def row_of(self, face_id: str) -> int | None:
        key = np.array(face_id.encode(), dtype=FACE_ID_DTYPE)
        at = int(np.searchsorted(self.sorted_ids, key))
        if at < len(self.sorted_ids) and self.sorted_ids[at] == key:
            row = int(self.sorted_rows[at])
            return row if self.rows.alive[row] else None
        return None


class CollectionIndex:
    """One collection's faces: a base block from a snapshot (or none) and a tail block of the
    faces added since, each changed only by the writer (``FaceIndex.apply``)."""

    def __init__(self, dimension: int, base: BaseRows | None = None) -> None:
        self.dimension = dimension
        self._base = base
        self._base_count = 0 if base is None else base.rows.count
        self._tail = Rows.empty(64, dimension)
        self._tail_rows: dict[str, int] = {}  # face id -> tail row, live faces only
        self._base_names = np.empty(0, "S1") if base is None else base.user_names
        self._added_names: list[str] = []
        self._tail_error = 0.0  # the largest ||scale * codes - vector|| added: with the base's, a bound for every row
        self._live = self._base_count
        self._dead = 0
        self._base_dead = 0

    def __len__(self) -> int:
        return self._live

    @property
    def garbage(self) -> int:
        """Rows a compaction would reclaim or move into a snapshot: removed faces, and every
        face added since the base was mapped (held privately, in every process)."""
        return self._dead + self._tail.count

    @property
    def base(self) -> BaseRows | None:
        return self._base

    def add(self, face_id: str, vector: np.ndarray, user_id: str | None) -> None:
        self.extend([face_id], np.asarray(vector, dtype=np.float32).reshape(1, -1), [user_id])

    def reserve(self, count: int) -> None:
        """Room for ``count`` faces in the tail, so a bulk load fills one block without regrowing."""
        if count > len(self._tail.codes):
            self._tail = self._tail.grown(count)

    def extend(self, face_ids: list[str], vectors: np.ndarray, user_ids: list[str | None]) -> None:
        """Add many faces at once (start-up's bulk load): one block copy, not a row each. Faces
        already indexed, or repeated in the batch, are added once."""
        seen: set[str] = set()
        fresh: list[int] = []
        for i, face_id in enumerate(face_ids):
            if face_id not in seen and self._row(face_id) is None:
                seen.add(face_id)
                fresh.append(i)
        if not fresh:
            return
        tail = self._tail
        start, end = tail.count, tail.count + len(fresh)
        if end > len(tail.codes):
            tail = tail.grown(max(end, 2 * len(tail.codes)))
        chosen = np.asarray(vectors, dtype=np.float32)[fresh]
        codes, scales, errors = quantised(chosen)
        tail.codes[start:end] = codes
        tail.scales[start:end] = scales
        tail.vectors[start:end] = chosen
        tail.face_ids[start:end] = [face_ids[i].encode() for i in fresh]
        tail.users[start:end] = [self._user_code(user_ids[i]) for i in fresh]
        tail.alive[start:end] = True
        self._tail_error = max(self._tail_error, float(errors.max()))
        self._tail = tail._replace(count=end)  # published last: searches read only rows below count
        self._tail_rows.update((face_ids[i], row) for i, row in zip(fresh, range(start, end)))
        self._live += len(fresh)

    def remove(self, face_id: str) -> None:
        row = self._tail_rows.pop(face_id, None)
        if row is not None:
            self._tail.alive[row] = False
        elif self._base is not None and (row := self._base.row_of(face_id)) is not None:
            self._base.rows.alive[row] = False
            self._base_dead += 1
        else:
            return
        self._live -= 1
        self._dead += 1

    def set_user(self, face_id: str, user_id: str | None) -> None:
        row = self._row(face_id)
        if row is not None:
            block, at = self._block(row)
            block.users[at] = self._user_code(user_id)

    def nbytes(self) -> tuple[int, int]:
        """Bytes the vectors of the faces held take: (codes, scales and vectors; what every search's scan reads)."""
        rows = self._base_count + self._tail.count
        scanned = rows * (self.dimension + 4)
        return scanned + rows * self.dimension * 4, scanned

    def vector(self, face_id: str) -> np.ndarray | None:
        row = self._row(face_id)
        if row is None:
            return None
        block, at = self._block(row)
        return block.exact(np.array([at]))[0]

    def search(self, probe: np.ndarray, max_distance: float, limit: int | None, users_only: bool) -> list[Neighbour]:
        """Faces within ``max_distance`` of ``probe``, nearest first, at most ``limit``.

        Exactly what an exact scan of every face returns: the quantised scan only chooses
        which rows the re-rank reads, and never drops a row that could be in the answer. The
        re-rank computes in float64 from the exact float32 vectors, so the answer no longer
        depends on how BLAS happened to round, and a face's distance is the same whichever
        other faces were scored with it. Ties go to the smaller face id, so the order does not
        depend on where in the index a face happens to sit.

        The one exception is a base with product codes (a snapshot's collection of
        ``APPROXIMATE_FROM`` faces or more): its candidates are the ``CANDIDATES`` faces whose
        codes score best, so a face the codes rank below that many others is missed (recall@1
        measured 1.0 at 1M and 10M, ``product_codes.py``). The candidates then go through the
        same int8 bound and exact re-rank as a full scan, so distances stay exact. When half the
        candidates or more are within ``max_distance`` and the answer may hold more than that,
        the codes may have cut it short, so the base is scanned exactly instead; so is it for
        SearchUsers (``users_only``), where the faces that belong to users may be few."""
        probe32 = np.asarray(probe, dtype=np.float32).reshape(-1)
        base, tail = self._base, [Scan(self._tail, self._tail_error)]
        everything = tail if base is None else [Scan(base.rows, base.max_error), *tail]
        if base is None or base.approximate is None or users_only:
            return self._nearest(self._scanned(everything, probe32, max_distance, limit, users_only), limit)
        coded = self._scanned([Scan(base.rows, base.max_error, self._coded_rows(base, base.approximate, probe32))],
                              probe32, max_distance, limit, False)
        half = CANDIDATES // 2
        if sum(len(found[0]) for found in coded) >= half and (limit is None or limit > half):
            return self._nearest(self._scanned(everything, probe32, max_distance, limit, users_only), limit)
        return self._nearest([*coded, *self._scanned(tail, probe32, max_distance, limit, users_only)], limit)

    def _scanned(self, scans: list[Scan], probe: np.ndarray, max_distance: float, limit: int | None,
                 users_only: bool) -> list[Found]:
        """The exact answer from ``scans``: the quantised scan's candidates, re-ranked."""
        return [self._within(block, rows, probe, max_distance)
                for block, rows in self._candidates(scans, probe, max_distance, limit, users_only)]

    def _coded_rows(self, base: BaseRows, codes: ProductCodes, probe: np.ndarray) -> np.ndarray:
        """The base's live candidate rows, ascending; as many more asked for as removed faces may take."""
        count = base.rows.count
        wanted = min(count, CANDIDATES * count // max(1, count - self._base_dead))
        rows = codes.candidates(probe, wanted)
        return rows[base.rows.alive[rows]]

    @staticmethod
    def _within(block: Rows, rows: np.ndarray, probe: np.ndarray, max_distance: float) -> Found:
        """Of ``rows``, the faces within ``max_distance``, with their exact distances."""
        dots = block.exact(rows).astype(np.float64) @ probe.astype(np.float64)
        distances = np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0))
        within = distances <= max_distance
        return block.face_ids[rows[within]], distances[within], block.users[rows[within]]

    def _nearest(self, found: list[Found], limit: int | None) -> list[Neighbour]:
        if not found:
            return []
        face_ids, distances, users = (np.concatenate(parts) for parts in zip(*found))
        order = np.lexsort((face_ids, distances))[:limit]
        return [Neighbour(face_ids[i].decode(), float(distances[i]), self.user_name(int(users[i]))) for i in order]

    def snapshot(self) -> dict[str, tuple[np.ndarray, str | None]]:
        """Every face as id -> (vector, user), for consistency checks against the database."""
        out: dict[str, tuple[np.ndarray, str | None]] = {}
        for block in self.blocks():
            rows = np.flatnonzero(block.alive[: block.count])
            for face_id, vector, user in zip(block.face_ids[rows], block.exact(rows), block.users[rows]):
                out[face_id.decode()] = (vector, self.user_name(int(user)))
        return out

    def compacted(self) -> CollectionIndex:
        """A copy holding only the live faces, all in a private tail: for when most of a
        collection has been removed and no snapshot will reclaim its rows."""
        fresh = CollectionIndex(self.dimension)
        fresh.reserve(self._live)
        for block in self.blocks():
            rows = np.flatnonzero(block.alive[: block.count])
            names = [self.user_name(int(code)) for code in block.users[rows]]
            fresh.extend([face_id.decode() for face_id in block.face_ids[rows]], block.exact(rows), names)
        return fresh

    @property
    def mostly_dead(self) -> bool:
        return self._dead > max(4096, 2 * self._live)

    def blocks(self) -> list[Rows]:
        """The base block (if any) and the tail, as they are now."""
        return ([self._base.rows] if self._base is not None else []) + [self._tail]

    @property
    def max_error(self) -> float:
        return max(self._tail_error, 0.0 if self._base is None else self._base.max_error)

    def _candidates(
        self, scans: list[Scan], probe: np.ndarray, max_distance: float, limit: int | None, users_only: bool
    ) -> list[tuple[Rows, np.ndarray]]:
        """Per block, the rows, ascending, that the exact re-rank must read: a superset of the
        answer from the rows scanned (all of a block's, or those ``Scan.rows`` names).

        For unit vectors distance <= max_distance iff dot >= 1 - max_distance**2 / 2. With
        v' = s_v c_v and p' = s_p c_p the row and the probe as scale times int8 codes,
        Cauchy-Schwarz gives
        |v'.p' - v.p| <= ||v'|| ||p' - p|| + ||v' - v|| ||p||  <=  (1 + E) e + E ||p||,
        E the largest row error, e the probe's (||v|| <= 1 up to float32 rounding, allowed
        for). The int8 dot c_v.c_p is exact: at most 128 * 127**2 < 2**24 in magnitude, so
        exact in float32 too. Scaling it by s_v in float32 errs by at most 2**-24 of
        |v'.p'| <= (1 + E)(||p|| + e); the margin allows four times that. With a ``limit``, a
        row whose best possible dot is below the limit-th best worst-case dot cannot be among
        the nearest ``limit`` either."""
        probe_codes, probe_scale, probe_error = quantised(probe.reshape(1, -1))
        scale, error = float(probe_scale[0]) or 1.0, float(probe_error[0])  # a zero probe's codes are zero either way
        probe_norm = float(np.linalg.norm(probe.astype(np.float64)))
        lowest_dot = 1.0 - float(max_distance) ** 2 / 2.0 if np.isfinite(max_distance) else -np.inf
        scored: list[tuple[Rows, np.ndarray, np.ndarray, float]] = []
        for block, max_error, subset in scans:
            if block.count == 0:
                continue
            norm_bound = 1.0 + 1e-6 + max_error
            rounding = 4.0 * 2.0**-24 * norm_bound * (probe_norm + error)
            margin = norm_bound * error + max_error * probe_norm + rounding + 1e-9
            # Never cdist(out=...): simsimd 6.5 then returns None without a reference of its own, so
            # every search would take one from None until the interpreter freed it and crashed.
            scanned = slice(0, block.count) if subset is None else subset
            scores = np.asarray(simsimd.cdist(probe_codes, block.codes[scanned], metric="dot", dtype="int8",
                                              out_dtype="float32"))[0]
            scores = np.multiply(scores, block.scales[scanned], out=scores)  # v'.p' / s_p
            cut = np.nextafter(np.float32((lowest_dot - margin) / scale), np.float32(-np.inf))  # rounded down
            kept = np.flatnonzero(scores >= cut)
            rows = kept if subset is None else subset[kept]
            wanted = block.alive[rows] & (block.users[rows] != NO_USER) if users_only else block.alive[rows]
            scored.append((block, rows[wanted], scores[kept][wanted].astype(np.float64) * scale, margin))
        if limit is not None and limit > 0 and sum(len(rows) for _, rows, _, _ in scored) > limit:
            # Each row's worst case is its score less its block's margin; the limit-th best worst case
            # bounds the answer, and a row whose best case (score plus margin) is below it cannot be in it.
            worst = np.concatenate([kept - margin for _, _, kept, margin in scored])
            bar = np.partition(worst, len(worst) - limit)[len(worst) - limit]
            scored = [(block, rows[kept + margin >= bar], kept, margin) for block, rows, kept, margin in scored]
        return [(block, rows.astype(np.int64)) for block, rows, _, _ in scored if len(rows)]

    def _row(self, face_id: str) -> int | None:
        """The live row of ``face_id``: base rows first, then tail rows numbered after them."""
        row = self._tail_rows.get(face_id)
        if row is not None:
            return self._base_count + row
        return None if self._base is None else self._base.row_of(face_id)

    def _block(self, row: int) -> tuple[Rows, int]:
        if row < self._base_count:
            assert self._base is not None
            return self._base.rows, row
        return self._tail, row - self._base_count

    def _user_code(self, user_id: str | None) -> int:
        """A new code for every assignment: codes need not be unique per user, only map back to
        one, so no reverse lookup is kept."""
        if user_id is None:
            return NO_USER
        self._added_names.append(user_id)
        return len(self._base_names) + len(self._added_names) - 1

    def user_name(self, code: int) -> str | None:
        if code == NO_USER:
            return None
        if code < len(self._base_names):
            return bytes(self._base_names[code]).decode()
        return self._added_names[code - len(self._base_names)]


def quantised(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float32 rows as int8 codes and a float32 scale each (a row is about scale * codes), with
    an upper bound on each row's ||scale * codes - row||: computed in float64, where
    scale * code is exact, and rounded up by a relative 1e-6, so it is never below the true
    error. Codes stay within +-127, so the int8 dot products cannot overflow or go asymmetric."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    largest = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(len(rows), np.float32)
    scales = (largest / np.float32(127.0)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1.0))
    codes = np.clip(np.rint(rows / safe[:, None]), -127, 127).astype(np.int8)
    rebuilt = codes.astype(np.float64) * scales.astype(np.float64)[:, None]
    errors = np.linalg.norm(rebuilt - rows.astype(np.float64), axis=1) * (1.0 + 1e-6) + 1e-12
    return codes, scales, errors


class FaceIndex:
    """All collections' indexes. Changes come in committed batches under one writer lock;
    searches and lookups take no lock (see the module docstring)."""

    def __init__(self, dimension: int = 128, collections: dict[int, CollectionIndex] | None = None) -> None:
        self.dimension = dimension
        self._collections: dict[int, CollectionIndex] = dict(collections or {})
        self._dropped_base_rows = 0
        self._lock = threading.Lock()

    def apply(self, changes: Iterable[IndexChange]) -> None:
        with self._lock:
            touched = set()
            for change in changes:
                change.apply(self)
                touched.add(change.collection_pk)
            for pk in touched:
                index = self._collections.get(pk)
                if index is not None and index.mostly_dead:
                    self._collections[pk] = index.compacted()  # searches in flight keep the old one
                    self._dropped_base_rows += 0 if index.base is None else index.base.rows.count

    def collection(self, collection_pk: int) -> CollectionIndex:
        """The collection's index, created empty if new: for the writer (``apply``, bulk load)."""
        return self._collections.setdefault(collection_pk, CollectionIndex(self.dimension))

    def collections(self) -> dict[int, CollectionIndex]:
        return dict(self._collections)

    def drop(self, collection_pk: int) -> None:
        dropped = self._collections.pop(collection_pk, None)
        if dropped is not None and dropped.base is not None:
            self._dropped_base_rows += dropped.base.rows.count

    @property
    def garbage(self) -> int:
        """Rows a new snapshot would reclaim or take out of private memory (see ``CollectionIndex.garbage``)."""
        return self._dropped_base_rows + sum(index.garbage for index in list(self._collections.values()))

    def base_rows(self) -> int:
        return sum(0 if index.base is None else index.base.rows.count for index in list(self._collections.values()))

    @property
    def lock(self) -> threading.Lock:
        """The writer lock: held to read a consistent state for a snapshot."""
        return self._lock

    def search(
        self, collection_pk: int, probe: np.ndarray, max_distance: float, limit: int | None = None, users_only: bool = False
    ) -> list[Neighbour]:
        index = self._collections.get(collection_pk)
        return [] if index is None else index.search(probe, max_distance, limit, users_only)

    def vector(self, collection_pk: int, face_id: str) -> np.ndarray | None:
        index = self._collections.get(collection_pk)
        return None if index is None else index.vector(face_id)

    def vectors(self, collection_pk: int, face_ids: list[str]) -> list[np.ndarray | None]:
        """The vectors of ``face_ids`` (None for a face no longer indexed)."""
        return [self.vector(collection_pk, face_id) for face_id in face_ids]

    def size(self, collection_pk: int) -> int:
        index = self._collections.get(collection_pk)
        return 0 if index is None else len(index)

    def snapshot(self) -> dict[int, dict[str, tuple[np.ndarray, str | None]]]:
        with self._lock:
            return {pk: index.snapshot() for pk, index in self._collections.items() if len(index)}


@dataclass(frozen=True)
class IndexChange:
    """One pending mutation, recorded inside a transaction and applied after it commits."""

    kind: str  # "add" | "remove" | "set_user" | "drop"
    collection_pk: int
    face_id: str = ""
    vector: np.ndarray | None = None
    user_id: str | None = None

    def apply(self, index: FaceIndex) -> None:
        if self.kind == "drop":
            index.drop(self.collection_pk)
            return
        target = index.collection(self.collection_pk)
        if self.kind == "add":
            assert self.vector is not None
            target.add(self.face_id, self.vector, self.user_id)
        elif self.kind == "remove":
            target.remove(self.face_id)
        elif self.kind == "set_user":
            target.set_user(self.face_id, self.user_id)
