"""An approximate nearest-neighbour graph over one collection: the candidate that
``bench/ann_bench.py`` measures against the exact scan (it is not used to answer requests).

The exact index (``store/face_index.py``) reads every face on every search; this graph
(usearch's HNSW) reads a few thousand. It only *proposes* candidates: the caller re-ranks them
against the exact float32 vectors, so a returned distance is always exact, and the only error
left is a true nearest face the graph failed to propose (its recall, ``bench/ann_bench.py``).
The graph holds int8 codes of the unit descriptors (usearch normalises each vector and scales
its components into -127..127) plus its links, keyed by the owner's integer row numbers; it
holds neither face ids nor float32 vectors.

Measured on 2026-11-28 (2 cores shared with other work, load 2–9; real sface mates among
synthetic distractors; 1 thread; the 100k figures are in ``DEFAULT_*`` below). Recall on real
mates is the weak point, and it falls with N: at 1M among face-like distractors, recall@1 was
0.60/0.74/0.87/0.92 at ef 256/512/1024/2048 (search p50 3.1/5.4/11/20 ms), while the exact
scan took 12.6 ms. A graph small enough for the node (277 B a face) is not fit to identify
people at that size, so it must not replace the exact scan until a run at the target size
shows recall@1 >= 0.995. (A search whose best re-ranked candidate is far from the probe, cosine
under 0.5, is where every miss at 100k happened: one way to use the graph is to trust only a
close first candidate and scan exactly otherwise.)

Sharing between processes: ``save`` writes the graph to one file (277 B a face at M 16, int8)
and ``view`` memory-maps it read-only, so every worker on a node shares the same page-cache
pages and start-up copies nothing. (Loaded into memory instead, usearch holds 517–531 B a face:
it over-allocates.) usearch cannot change a mapped graph, so a viewed index keeps changes
beside it: rows added since the snapshot in a float32 overlay that every search scans exactly,
and rows removed since the snapshot as a set that filters the graph's results. Both grow by one
entry per change (about 520 B per add, 80 B per remove), so the owner should write a new
snapshot (``save`` merges them in) once they hold a few thousand faces, and ``view`` that.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
from usearch.index import Index

DEFAULT_DTYPE = "i8"
"""Stored code per dimension: int8 is 128 B a face against f16's 256 B, and with the exact
re-rank it found the nearest face as often as f16 (100k faces, ef 512: 0.992 against 0.988 on
real mates among clustered distractors, 0.985 against 0.977 among fitted ones)."""

DEFAULT_CONNECTIVITY = 16
"""HNSW's M, links per node (layer 0 keeps 2 M). M 12 saves 31 B a face but lost recall at
every ef (0.977 against 0.992 at ef 512, 100k); M 32 needs about 400 B a face, over the
node's budget of 300."""

DEFAULT_EXPANSION_ADD = 128
"""ef_construction, candidates kept while linking a new node. One thread built 100k faces in
45–145 s and 1M in 1,164 s (load 2), so graphs are built off the request path, on every core."""

DEFAULT_EXPANSION_SEARCH = 512
"""ef_search, candidates kept while walking the graph for a probe. Recall@1 on real mates at
100k, ef 64/128/256/512: 0.87/0.93/0.97/0.992 among clustered distractors, 0.72/0.85/0.93/0.985
among fitted (face-like) ones; search p50 0.35/0.6/1.0/1.3–6 ms (load 5–9). Synthetic probes
reach 1.0 from ef 128: recall measured on them flatters the graph."""


class ApproximateIndex:
    """One collection's HNSW graph over unit descriptors, keyed by row number.

    A viewed graph (the serving case) is searched from many threads at once without a lock,
    alongside mutations: the overlay and the removed set are replaced whole, never changed in
    place. A graph in memory (being built, before ``save``) can grow and move under a search,
    so there searches and mutations take turns on ``_changes``.
    """

    def __init__(
        self,
        dimension: int = 128,
        dtype: str = DEFAULT_DTYPE,
        connectivity: int = DEFAULT_CONNECTIVITY,
        expansion_add: int = DEFAULT_EXPANSION_ADD,
        expansion_search: int = DEFAULT_EXPANSION_SEARCH,
    ) -> None:
        self._start(Index(
            ndim=dimension, metric="cos", dtype=dtype, connectivity=connectivity,
            expansion_add=expansion_add, expansion_search=expansion_search,
        ), source=None)

    def _start(self, graph: Index, source: Path | None) -> None:
        """Hold ``graph``, mapped from ``source`` when that is given, with no changes beside it."""
        self.dimension = int(graph.ndim)
        self._graph = graph
        self._source = source
        self._overlay: tuple[np.ndarray, np.ndarray] = (np.empty(0, dtype=np.int64), np.empty((0, self.dimension), dtype=np.float32))
        self._removed: frozenset[int] = frozenset()
        self._changes = threading.Lock()

    def __len__(self) -> int:
        return len(self._graph) - len(self._removed) + len(self._overlay[0])

    @property
    def viewed(self) -> bool:
        """True when the graph is a read-only memory map of a saved file (changes go to the overlay)."""
        return self._source is not None

    @property
    def expansion_search(self) -> int:
        """ef_search: candidates kept while walking the graph; recall and latency grow with it."""
        return int(self._graph.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._graph.expansion_search = value

    @property
    def overlay_size(self) -> int:
        """Changes held beside a viewed graph (rows added plus rows removed since the snapshot)."""
        return len(self._overlay[0]) + len(self._removed)

    def build(self, vectors: np.ndarray, threads: int = 0) -> None:
        """Add rows ``0..len(vectors)-1`` at once (``threads`` 0: every core). One thread took
        about 19 minutes at 1M on this machine, so start-up views a saved graph instead."""
        with self._changes:
            self._require_writable()
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            self._graph.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=threads)

    def add(self, row: int, vector: np.ndarray) -> None:
        """Index ``row``; a row already present is replaced, as the owner reuses row numbers."""
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        with self._changes:
            if self._source is None:
                if row in self._graph:
                    self._graph.remove(row)
                self._graph.add(row, vector)
                return
            rows, vectors = self._overlay
            keep = rows != row
            self._overlay = np.append(rows[keep], np.int64(row)), np.vstack([vectors[keep], vector[None, :]])
            if row in self._graph:  # the snapshot's copy of this row is stale now
                self._removed = self._removed | {row}

    def remove(self, row: int) -> None:
        """Forget ``row``; unknown rows are ignored."""
        with self._changes:
            if self._source is None:
                if row in self._graph:
                    self._graph.remove(row)
                return
            rows, vectors = self._overlay
            self._overlay = rows[rows != row], vectors[rows != row]
            if row in self._graph:
                self._removed = self._removed | {row}

    def candidates(self, probe: np.ndarray, count: int) -> np.ndarray:
        """Up to ``count`` rows, approximately nearest to ``probe`` first (int64).

        The caller must re-rank them exactly: the order comes from int8 codes. A larger
        ``count`` costs little (the walk keeps ``expansion_search`` candidates anyway) and is
        what makes the re-ranked first result equal the exact nearest: see ``DEFAULT_*``."""
        probe = np.ascontiguousarray(probe, dtype=np.float32).reshape(-1)
        if self._source is None:
            with self._changes:  # usearch may reallocate a growing graph under a search
                found = self._graph.search(probe, count, threads=1)
            return found.keys.astype(np.int64)
        removed, (overlay_rows, overlay_vectors) = self._removed, self._overlay
        found = self._graph.search(probe, count + len(removed), threads=1)
        rows = found.keys.astype(np.int64)
        distances = found.distances.astype(np.float64)
        if removed:
            kept = np.array([row not in removed for row in rows], dtype=bool)
            rows, distances = rows[kept], distances[kept]
        if len(overlay_rows):
            norms = np.linalg.norm(overlay_vectors, axis=1) * np.linalg.norm(probe)
            overlay_distances = 1.0 - (overlay_vectors.astype(np.float64) @ probe.astype(np.float64)) / np.maximum(norms, 1e-12)
            rows = np.concatenate([rows, overlay_rows])
            distances = np.concatenate([distances, overlay_distances])
        order = np.argsort(distances, kind="stable")[:count]
        return rows[order]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the graph, with a viewed index's overlay merged in, to ``path`` (atomically:
        written beside it, then renamed, so a process viewing the old file keeps its mapping)."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        with self._changes:
            graph = self._graph
            if self._source is not None:
                graph = Index.restore(str(self._source), view=False)
                assert graph is not None
                for row in self._removed:
                    graph.remove(row)
                rows, vectors = self._overlay
                if len(rows):
                    graph.add(rows.astype(np.uint64), vectors, threads=1)
            graph.save(str(partial))
        os.replace(partial, target)

    @classmethod
    def view(cls, path: str | os.PathLike[str], expansion_search: int = DEFAULT_EXPANSION_SEARCH) -> ApproximateIndex:
        """The graph saved at ``path``, memory-mapped read-only: processes that view one file
        share its pages, and nothing is copied at start-up. Changes go to the overlay."""
        graph = Index.restore(str(path), view=True)
        if graph is None:
            raise ValueError(f"{path} is not a usearch index")
        graph.expansion_search = expansion_search
        index = cls.__new__(cls)
        index._start(graph, source=Path(path))
        return index

    def memory_bytes(self) -> int:
        """Bytes the graph holds in memory (usearch's count; a viewed graph's mapped file is
        page cache shared by every process and is not counted here), plus the overlay."""
        rows, vectors = self._overlay
        return int(self._graph.memory_usage) + rows.nbytes + vectors.nbytes + 80 * len(self._removed)

    def _require_writable(self) -> None:
        if self._source is not None:
            raise ValueError("a viewed index is read-only: build a new one, or add rows one by one into its overlay")
