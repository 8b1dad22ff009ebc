"""Approximate candidates for a large collection: faiss's 4-bit product-quantisation fast scan.

The exact index reads 132 B a face on every search (``face_index.py``): 8.4 ms at 1M faces and
118 ms at 10M on this node's memory bandwidth. Product codes read 32 B a face (a 128-dimension
descriptor as 64 sub-vectors of 2 dimensions, each one of 16 trained centroids), scored from a
lookup table held in SIMD registers, so the scan is about four times shorter and much faster per
byte. The codes only *choose* candidates: the caller puts them through the exact index's int8
bound and float64 re-rank, so a returned distance is always exact and the only error left is a
nearest face the codes ranked below the candidates (recall, measured by ``bench/ann_bench.py``
and ``bench/scale_bench.py``).

Measured on 2026-11-28 (``facegate bench ann --no-graphs``, ``benchmarks/results/ann.json``: 622
real sface mates among distractors either clustered or drawn from a Gaussian fitted to real
descriptors, the hardest case found for approximate indexes): with 1,024 candidates recall@1
against exact search was 1.0 at 1M and at 10M for both kinds, in 2.3 ms a search at 1M (the exact
scan: 9.5-9.9 ms) and 11.5-12.7 ms at 10M on two threads. With 256 candidates it was 0.997 at
10M among fitted distractors, with 64 0.987. Graphs and clusters failed the same test: usearch's
HNSW reached 0.92 at 20 ms at 1M, faiss IVF-SQ8 0.98 probing a fifth of its lists; they lose real
mates that sit far from where the index expects them, and the fast scan, which reads every face,
has no such blind spot. 2 bits a dimension (16 B a face) reached only 0.989 at 1M.

Codes are built when a snapshot is written (``index_snapshot.py``), from the same rows in the same
order, and loaded into each process's memory (32 B a face; faiss cannot map them). Faces added
since the snapshot are in the exact tail; removed ones are filtered out of the candidates.
"""

from __future__ import annotations

import ctypes
import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np

APPROXIMATE_FROM = 500_000
"""Collections with at least this many faces in a snapshot are searched through product codes.
Below it the exact scan takes under 4 ms (measured: 0.8 ms at 100k, 8.4 ms at 1M), and exactness
costs too little to trade away."""
CANDIDATES = 1024
"""Faces re-ranked per search: recall@1 1.0 at 1M and 10M (see the module docstring), for about
0.5 ms more than 256 candidates, which missed 2 of 622 mates at 10M."""
SHARD_ROWS = 500_000
"""Faces per code block. Blocks are scanned on parallel threads (faiss does not split a single
query across its OpenMP threads), so even the smallest collection with codes fills both cores
of a 2-core node: measured at 1M faces with 1,024 candidates, one block took 1.64 ms, two blocks
on two threads 1.12 ms, four 1.26 ms (at 2M, two blocks 2.7 ms against 3.6 ms for one)."""
BLOCK_CANDIDATES = 128
"""Candidates each block is first asked for (``ProductCodes.candidates``), when the blocks' fair
share of ``CANDIDATES`` is smaller: a fast-scan search keeps its best answers in a heap, which
costs more the more it keeps. Measured at 10M faces (20 blocks, 40 real mates among clustered
distractors): 1,024 a block took 10.0-12.6 ms, 128 9.4-11.8 ms; the block holding most of the
best 1,024 held at most 88 of them."""
TRAINING_ROWS = 65_536
"""Rows the sub-vector centroids are trained on (16 centroids each: 4,096 rows per centroid)."""
BITS = 4
"""Bits a sub-vector: the fast scan's lookup tables need 16 entries, one SIMD register."""

MADV_COLLAPSE = 25
"""Linux's ``madvise`` advice (kernel 6.1 and later) to move a range into 2 MB pages at once,
whatever the system's transparent huge page setting; Python's ``mmap`` module does not name it."""
HUGE_PAGE = 2 * 1024 * 1024

faiss.omp_set_num_threads(1)  # as with BLAS, one thread a worker: parallelism comes from the shard pool


def training_rows(total: int) -> np.ndarray:
    """Which of ``total`` rows, ascending, to train on: a random sample seeded by the size, so
    rewriting the same faces trains the same centroids."""
    return np.sort(np.random.default_rng(total).choice(total, min(total, TRAINING_ROWS), replace=False))


def sub_vectors(dimension: int) -> int:
    """Two dimensions a sub-vector (64 for sface's 128, 32 B a face)."""
    return max(1, dimension // 2)


class ProductCodesBuilder:
    """Builds codes row by row in the order a snapshot writes them, after training on a sample."""

    def __init__(self, sample: np.ndarray) -> None:
        dimension = sample.shape[1]
        self._trained = faiss.IndexPQFastScan(dimension, sub_vectors(dimension), BITS, faiss.METRIC_INNER_PRODUCT)
        self._trained.train(np.ascontiguousarray(sample, dtype=np.float32))
        self._shards: list[faiss.Index] = []

    def add(self, vectors: np.ndarray) -> None:
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        while len(rows):
            if not self._shards or self._shards[-1].ntotal >= SHARD_ROWS:
                self._shards.append(faiss.clone_index(self._trained))
            room = SHARD_ROWS - self._shards[-1].ntotal
            self._shards[-1].add(rows[:room])
            rows = rows[room:]

    def built(self) -> ProductCodes:
        """The codes added so far, searchable in this process (the benchmark's way in; a snapshot saves them)."""
        return ProductCodes(self._shards)

    def save(self, folder: Path, stem: str) -> list[str]:
        """Writes each shard to ``folder``; returns the file names, in row order."""
        names = []
        for number, shard in enumerate(self._shards):
            name = f"{stem}-{number}.faiss"
            faiss.write_index(shard, str(folder / name))
            names.append(name)
        return names


class ProductCodes:
    """A collection's codes as loaded from a snapshot: shards of consecutive rows."""

    def __init__(self, shards: list[faiss.Index]) -> None:
        for shard in shards:  # before any search can see them
            in_huge_pages(shard)
        self._shards = shards
        self._offsets = np.cumsum([0] + [shard.ntotal for shard in shards])[:-1]

    @classmethod
    def load(cls, folder: Path, names: list[str]) -> ProductCodes:
        return cls([faiss.read_index(str(folder / name)) for name in names])

    @property
    def count(self) -> int:
        return int(sum(shard.ntotal for shard in self._shards))

    def candidates(self, probe: np.ndarray, count: int) -> np.ndarray:
        """The rows of the ``count`` faces whose codes score best against ``probe``, ascending.

        Each block is first asked for its best ``first_ask`` only. A block whose last answer
        still scores at least the ``count``-th best of all answers may hold more of the best
        ``count``, and is asked again for ``count``; any other block's unasked rows score below
        that bar, so the answer is the same as asking every block for ``count`` (up to which of
        the faces tied on the last score are kept)."""
        query = np.ascontiguousarray(probe, dtype=np.float32).reshape(1, -1)
        first_ask = max(BLOCK_CANDIDATES, 2 * count // len(self._shards))
        asked = [min(count, first_ask, shard.ntotal) for shard in self._shards]
        found = self._search(query, list(range(len(self._shards))), asked)
        bar = _bar(found, count)
        full = [min(count, shard.ntotal) for shard in self._shards]
        again = [i for i, (scores, _) in enumerate(found) if asked[i] < full[i] and len(scores) and scores[-1] >= bar]
        for i, result in zip(again, self._search(query, again, [full[i] for i in again])):
            found[i] = result
        scores = np.concatenate([scores for scores, _ in found])
        rows = np.concatenate([rows for _, rows in found])
        if len(rows) > count:
            rows = rows[np.argpartition(-scores, count - 1)[:count]]
        return np.sort(rows)

    def _search(self, query: np.ndarray, blocks: list[int], counts: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each block's best ``counts`` (scores, best first, and rows of the collection)."""
        def one(block: int, count: int) -> tuple[np.ndarray, np.ndarray]:
            scores, rows = self._shards[block].search(query, count)
            kept = rows[0] >= 0
            return scores[0][kept], rows[0][kept] + self._offsets[block]

        if len(blocks) == 1:
            return [one(blocks[0], counts[0])]
        return list(_shard_pool().map(one, blocks, counts))  # faiss releases the GIL while it scans


@functools.cache
def _shard_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="product-codes")


def in_huge_pages(shard: faiss.Index) -> None:
    """Moves the block's codes into 2 MB pages, where the kernel can. A scan streams
    through every code, and in 4 KB pages each 4 KB costs an address translation of its own.
    Measured on 2026-12-07 at 10M faces (20 blocks, 300 MB of codes, collapsed in 0.85 s when
    the snapshot is opened): the candidates took 10.3-11.1 ms at p50 against 11.4-13.0 ms in
    the same process before. Where the kernel cannot (an older one, or huge pages disabled),
    the codes stay as they were and only the time differs."""
    codes = faiss.rev_swig_ptr(shard.codes.data(), shard.codes.size())
    start = -(-codes.ctypes.data // HUGE_PAGE) * HUGE_PAGE  # the whole huge pages inside the codes
    end = (codes.ctypes.data + codes.nbytes) // HUGE_PAGE * HUGE_PAGE
    if end > start:
        _libc().madvise(start, end - start, MADV_COLLAPSE)  # best effort: a refusal changes only the time


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _bar(found: list[tuple[np.ndarray, np.ndarray]], count: int) -> float:
    """The ``count``-th best score of all blocks' answers (-inf when there are fewer)."""
    scores = np.concatenate([scores for scores, _ in found])
    return float(np.partition(scores, len(scores) - count)[len(scores) - count]) if len(scores) >= count else -np.inf
