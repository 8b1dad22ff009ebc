"""The in-memory search index: exact, vectorised nearest-neighbour search per collection.

The database stays the source of truth; this is a cache of its embeddings laid out for
BLAS. It is built once at start and then changed only by committed transactions (see
``Store.transaction``), so searches never see uncommitted faces, never go stale and never
trigger a rebuild on the request path. Descriptors are unit length, so Euclidean distance
is ``sqrt(2 - 2 * dot)`` and one matrix-vector product scores a whole collection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Neighbour:
    face_id: str
    distance: float
    user_id: str | None


class CollectionIndex:
    """One collection's vectors: a growable float32 matrix with swap-remove, O(1) per change."""

    def __init__(self, dimension: int) -> None:
        self._vectors = np.empty((64, dimension), dtype=np.float32)
        self._face_ids: list[str] = []
        self._user_ids: list[str | None] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._face_ids)

    def add(self, face_id: str, vector: np.ndarray, user_id: str | None) -> None:
        if face_id in self._rows:
            return
        row = len(self._face_ids)
        if row == len(self._vectors):
            grown = np.empty((2 * len(self._vectors), self._vectors.shape[1]), dtype=np.float32)
            grown[:row] = self._vectors[:row]
            self._vectors = grown
        self._vectors[row] = vector
        self._face_ids.append(face_id)
        self._user_ids.append(user_id)
        self._rows[face_id] = row

    def reserve(self, count: int) -> None:
        """Room for ``count`` faces in all, so a bulk load fills one matrix without regrowing."""
        if count > len(self._vectors):
            grown = np.empty((count, self._vectors.shape[1]), dtype=np.float32)
            grown[: len(self._face_ids)] = self._vectors[: len(self._face_ids)]
            self._vectors = grown

    def extend(self, face_ids: list[str], vectors: np.ndarray, user_ids: list[str | None]) -> None:
        """``add`` for many faces at once (start-up's bulk load): one block copy, not a row
        each. Faces already indexed, or repeated in the batch, are added once, as ``add`` does."""
        if any(face_id in self._rows for face_id in face_ids) or len(set(face_ids)) < len(face_ids):
            for face_id, vector, user_id in zip(face_ids, vectors, user_ids):
                self.add(face_id, vector, user_id)
            return
        start, end = len(self._face_ids), len(self._face_ids) + len(face_ids)
        if end > len(self._vectors):
            self.reserve(max(end, 2 * len(self._vectors)))
        self._vectors[start:end] = vectors
        self._face_ids.extend(face_ids)
        self._user_ids.extend(user_ids)
        self._rows.update(zip(face_ids, range(start, end)))

    def remove(self, face_id: str) -> None:
        row = self._rows.pop(face_id, None)
        if row is None:
            return
        last = len(self._face_ids) - 1
        if row != last:
            self._vectors[row] = self._vectors[last]
            self._face_ids[row] = self._face_ids[last]
            self._user_ids[row] = self._user_ids[last]
            self._rows[self._face_ids[row]] = row
        self._face_ids.pop()
        self._user_ids.pop()

    def set_user(self, face_id: str, user_id: str | None) -> None:
        row = self._rows.get(face_id)
        if row is not None:
            self._user_ids[row] = user_id

    def vector(self, face_id: str) -> np.ndarray | None:
        row = self._rows.get(face_id)
        return None if row is None else self._vectors[row].copy()

    def search(self, probe: np.ndarray, max_distance: float, limit: int | None, users_only: bool) -> list[Neighbour]:
        """Faces within ``max_distance`` of ``probe``, nearest first, at most ``limit``."""
        count = len(self._face_ids)
        if count == 0:
            return []
        dots = self._vectors[:count] @ probe.astype(np.float32)
        distances = np.sqrt(np.maximum(2.0 - 2.0 * dots, 0.0))
        candidates = np.flatnonzero(distances <= max_distance)
        if users_only:
            candidates = np.array([i for i in candidates if self._user_ids[i] is not None], dtype=np.int64)
        if limit is not None and len(candidates) > limit:
            candidates = candidates[np.argpartition(distances[candidates], limit - 1)[:limit]]
        ordered = candidates[np.argsort(distances[candidates], kind="stable")]
        return [Neighbour(self._face_ids[i], float(distances[i]), self._user_ids[i]) for i in ordered]

    def snapshot(self) -> dict[str, tuple[np.ndarray, str | None]]:
        """Every face as id -> (vector, user), for consistency checks against the database."""
        return {fid: (self._vectors[row].copy(), self._user_ids[row]) for fid, row in self._rows.items()}


class FaceIndex:
    """All collections' indexes, guarded by one lock; mutations come in committed batches."""

    def __init__(self, dimension: int = 128) -> None:
        self.dimension = dimension
        self._collections: dict[int, CollectionIndex] = {}
        self._lock = threading.RLock()

    def apply(self, changes: Iterable[IndexChange]) -> None:
        with self._lock:
            for change in changes:
                change.apply(self)

    def collection(self, collection_pk: int) -> CollectionIndex:
        with self._lock:
            return self._collections.setdefault(collection_pk, CollectionIndex(self.dimension))

    def drop(self, collection_pk: int) -> None:
        with self._lock:
            self._collections.pop(collection_pk, None)

    def search(
        self, collection_pk: int, probe: np.ndarray, max_distance: float, limit: int | None = None, users_only: bool = False
    ) -> list[Neighbour]:
        with self._lock:
            return self.collection(collection_pk).search(probe, max_distance, limit, users_only)

    def vector(self, collection_pk: int, face_id: str) -> np.ndarray | None:
        with self._lock:
            return self.collection(collection_pk).vector(face_id)

    def vectors(self, collection_pk: int, face_ids: list[str]) -> list[np.ndarray | None]:
        """The vectors of ``face_ids`` in one lock (None for a face no longer indexed)."""
        with self._lock:
            index = self.collection(collection_pk)
            return [index.vector(face_id) for face_id in face_ids]

    def size(self, collection_pk: int) -> int:
        with self._lock:
            return len(self.collection(collection_pk))

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
