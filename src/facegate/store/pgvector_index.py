"""The face index on PostgreSQL with pgvector: search runs in the database, nothing in memory.

Where schema v8 found pgvector (``store/vector_column.py``), ``Store.index`` is this instead
of ``FaceIndex``, with the same methods. Each search reads committed rows, so every server on
the database sees every other's writes at once, and none loads or replays anything.

A search asks pgvector's HNSW index (iterative scan, so the ``collection_pk`` filter cannot
starve it) for the nearest faces of the collection in growing batches, until the farthest
face fetched is beyond the radius (or, with a ``limit``, beyond the limit-th nearest found),
allowing ``DOT_MARGIN`` for pgvector's float32 arithmetic. The candidates are then
re-ranked exactly, in float64 from the stored float32 bytes, as ``CollectionIndex.search``
does: the
distances, order and radius are those of an exact search, and only a face the graph never
reached can be missed (measured: ``bench/pgvector_scale.py``). A batch that comes back short
means the scan ran out, of faces or of ``MAX_SCAN_TUPLES``; then the collection is searched
exactly within the radius instead, so a small collection in a large table loses nothing.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import Connection, Engine, and_, func, select, text

from facegate.store import schema
from facegate.store.face_index import Neighbour
from facegate.store.vector_column import DIMENSION, parse_vector, vector_literal

EF_SEARCH = 1000
"""HNSW candidate list per search (pgvector's ``hnsw.ef_search``, at most 1000). A graph
search misses a face when it never reaches the face's part of the graph (a real face among
distractors unlike it), and only a wide candidate list makes that rare. Measured at 100k
faces (real sface mates among synthetic clustered distractors, m=32, ``bench/pgvector_scale.py``):
nearest-neighbour recall@1 at 100, 200, 400 and 1000 was 0.92, 0.97, 0.99 and 1.0, the only
one at or above 0.995; at 300k faces, 1000 gave 0.895 (the graph reaches an isolated face less
often as it grows, and no larger ef_search is allowed). Searching narrow first and wide only when nothing was found within the
threshold was tried: a narrow pass often finds another person within the threshold and not
the mate (recall@1 0.955 at threshold 80)."""
FIRST_BATCH = 40
"""Faces fetched by a search's first round trip: more than a 1:N search at a strict
threshold usually matches, so one round trip is the common case."""
BATCH_GROWTH = 4
"""Each further batch is this many times larger (all work repeated stays under a third)."""
MAX_SCAN_TUPLES = 50_000
"""``hnsw.max_scan_tuples``: graph nodes an iterative scan visits before it gives up (then the
exact fallback answers). pgvector's default is 20,000."""
DOT_MARGIN = 1e-4
"""Slack, in inner product, for pgvector's float32 sums (at most about d * 2**-24 = 8e-6 for
d = 128 unit vectors): a face is treated as possibly nearer than pgvector says by this much."""

_COLUMNS = "face_id, user_id, embedding, descriptor <#> CAST(:probe AS vector({d})) AS score"


class PgVectorIndex:
    """``FaceIndex``'s interface over ``faces.descriptor``: stateless, so nothing to keep current."""

    def __init__(self, engine: Engine, dimension: int = DIMENSION) -> None:
        self._engine = engine
        self.dimension = dimension

    def search(
        self, collection_pk: int, probe: np.ndarray, max_distance: float, limit: int | None = None, users_only: bool = False
    ) -> list[Neighbour]:
        """Faces within ``max_distance`` (Euclidean, unit vectors) of ``probe``, nearest first
        (ties by face id), at most ``limit`` (None: all within the radius)."""
        if limit == 0:
            return []
        probe32 = np.asarray(probe, dtype=np.float32).reshape(-1)
        lowest_dot = 1.0 - float(max_distance) ** 2 / 2.0 if np.isfinite(max_distance) else -np.inf
        params = {"pk": collection_pk, "probe": vector_literal(probe32)}
        with self._engine.connect() as connection:
            if lowest_dot - DOT_MARGIN <= -1.0:  # the radius takes in the whole sphere
                rows = self._within(connection, params, None, users_only)
            else:
                rows = self._nearest_within(connection, params, probe32, lowest_dot, limit, users_only)
        return _reranked(rows, probe32, max_distance, limit)

    def _nearest_within(
        self, connection: Connection, params: dict[str, object], probe: np.ndarray, lowest_dot: float,
        limit: int | None, users_only: bool,
    ) -> list[tuple[str, str | None, bytes]]:
        query = text(
            f"SELECT {_COLUMNS.format(d=self.dimension)} FROM faces WHERE collection_pk = :pk"
            + (" AND user_id IS NOT NULL" if users_only else "")
            + f" ORDER BY descriptor <#> CAST(:probe AS vector({self.dimension})) LIMIT :k"
        )
        batch = FIRST_BATCH
        while True:
            _configure(connection, max(EF_SEARCH, batch))
            rows = connection.execute(query, {**params, "k": batch}).all()
            if len(rows) < batch:  # ran out of faces, or the scan gave up: answer exactly
                return self._within(connection, params, lowest_dot, users_only)
            farthest_dot = -max(r.score for r in rows) + DOT_MARGIN  # nothing unfetched is nearer
            if farthest_dot < lowest_dot:
                return [(r.face_id, r.user_id, r.embedding) for r in rows]
            if limit is not None:
                dots = np.sort(_exact_dots([r.embedding for r in rows], probe))[::-1]
                if len(dots) >= limit and dots[limit - 1] >= lowest_dot and farthest_dot < dots[limit - 1]:
                    return [(r.face_id, r.user_id, r.embedding) for r in rows]
            batch *= BATCH_GROWTH

    def _within(
        self, connection: Connection, params: dict[str, object], lowest_dot: float | None, users_only: bool
    ) -> list[tuple[str, str | None, bytes]]:
        """Every face of the collection within the radius (widened by ``DOT_MARGIN``), by
        computing each one's distance: a plan that cannot use the HNSW index, so exact."""
        conditions = ["collection_pk = :pk"] + (["user_id IS NOT NULL"] if users_only else [])
        if lowest_dot is not None:
            conditions.append(f"descriptor <#> CAST(:probe AS vector({self.dimension})) <= :score")
            params = {**params, "score": -(lowest_dot - DOT_MARGIN)}
        else:
            params = {"pk": params["pk"]}
        rows = connection.execute(text("SELECT face_id, user_id, embedding FROM faces WHERE " + " AND ".join(conditions)), params)
        return [(r.face_id, r.user_id, r.embedding) for r in rows]

    def vector(self, collection_pk: int, face_id: str) -> np.ndarray | None:
        return self.vectors(collection_pk, [face_id])[0]

    def vectors(self, collection_pk: int, face_ids: list[str]) -> list[np.ndarray | None]:
        """The exact stored vectors of ``face_ids`` (None for a face not stored)."""
        if not face_ids:
            return []
        f = schema.faces.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(f.face_id, f.embedding).where(and_(f.collection_pk == collection_pk, f.face_id.in_(face_ids)))
            )
            found = {r.face_id: np.frombuffer(r.embedding, dtype="<f4").astype(np.float32) for r in rows}
        return [found.get(face_id) for face_id in face_ids]

    def size(self, collection_pk: int) -> int:
        f = schema.faces.c
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count()).where(f.collection_pk == collection_pk)).scalar_one())

    def snapshot(self) -> dict[int, dict[str, tuple[np.ndarray, str | None]]]:
        """Every face as id -> (vector, user) read from the ``vector`` column, so comparing it
        with the exact bytes (``Store.index_disagreements``) checks what searches use."""
        out: dict[int, dict[str, tuple[np.ndarray, str | None]]] = {}
        with self._engine.connect() as connection:
            rows = connection.execute(text("SELECT collection_pk, face_id, user_id, descriptor::text AS descriptor FROM faces"))
            for r in rows:
                out.setdefault(r.collection_pk, {})[r.face_id] = (parse_vector(r.descriptor), r.user_id)
        return out


def _configure(connection: Connection, ef_search: int) -> None:
    """This transaction's scan settings. Custom plans always, so each search is planned for
    its own collection's size (a generic plan could pick an exact sort for a huge collection,
    or the graph for a tiny one)."""
    connection.execute(
        text("SELECT set_config('hnsw.ef_search', :ef, true), set_config('hnsw.iterative_scan', 'relaxed_order', true), "
             "set_config('hnsw.max_scan_tuples', :tuples, true), set_config('plan_cache_mode', 'force_custom_plan', true)"),
        {"ef": str(min(ef_search, 1000)), "tuples": str(MAX_SCAN_TUPLES)},
    )


def _exact_dots(embeddings: list[bytes], probe: np.ndarray) -> np.ndarray:
    """Inner products in float64 of the stored float32 vectors with the probe."""
    if not embeddings:
        return np.empty(0)
    vectors = np.frombuffer(b"".join(embeddings), dtype="<f4").reshape(len(embeddings), -1)
    return vectors.astype(np.float64) @ probe.astype(np.float64)


def _reranked(rows: list[tuple[str, str | None, bytes]], probe: np.ndarray, max_distance: float, limit: int | None) -> list[Neighbour]:
    """The exact answer among ``rows``: distances in float64, within the radius, nearest
    first, ties by face id, at most ``limit``."""
    distances = np.sqrt(np.maximum(2.0 - 2.0 * _exact_dots([r[2] for r in rows], probe), 0.0))
    kept = sorted((float(d), face_id, user_id) for (face_id, user_id, _), d in zip(rows, distances) if d <= max_distance)
    return [Neighbour(face_id, d, user_id) for d, face_id, user_id in kept[:limit]]
