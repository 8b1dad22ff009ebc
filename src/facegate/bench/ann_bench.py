"""Approximate indexes at N faces: build, memory, latency, recall. Two kinds: the product codes
the index uses for large collections (``store/product_codes.py``), and the HNSW graph of
``bench/approximate_index.py``, which no request uses.

The N faces are synthetic unit descriptors clustered like real ones (``index_bench``) plus real
sface descriptors of the shared LFW photos: every person's first photo is enrolled, and for
people with two or more photos the second is a probe (a real *mate* among distractors, the
search that matters). ``recall_at_1``: how often the exact nearest face of a probe (float64 brute
force over all N) is the first face after re-ranking the index's ``count`` candidates exactly;
``recall_at_1_within_threshold`` counts only probes whose exact nearest scores at least
``FaceMatchThreshold`` 80 (a miss there is a false non-match; a miss beyond it changes no
answer); ``recall_at_1_synthetic`` uses stored synthetic faces plus fresh noise.

Two kinds of distractors, because they disagree: ``clustered`` (``index_bench``'s, random
directions around 500 centres) leave the real faces on an island of their own, which the graph
finds at 100k but mostly fails to reach at 1M (recall 0.13–0.38, measured 2026-11-28), while
its synthetic probes stay near 1.0; ``fitted`` are drawn from a Gaussian with the mean and
covariance of the real descriptors (fitted at bench time, never stored), so every probe's
neighbourhood is crowded with face-like distractors, as in a real gallery of millions.

Everything runs on one thread, the build too unless ``build_threads`` says otherwise: the
searches (one probe at a time, timed as candidates plus the exact float64 re-rank), and the
exact int8 scan of ``store/face_index.py`` at the same N in the same run, for the switch
size. Memory per face is
usearch's own count (``memory_bytes``, the graph loaded in RAM, which over-allocates), the RSS
the build added, and the saved file's size: a viewed graph is that file in the page cache,
shared by every process. ``loadavg`` is recorded, since the machine's 2 cores are shared.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.bench.index_bench import DIMENSION, clustered_descriptors
from facegate.engine.face_models import load_engine
from facegate.evaluate.describe import describe_photos
from facegate.bench.approximate_index import ApproximateIndex
from facegate.store.face_index import CollectionIndex
from facegate.store.product_codes import BITS, ProductCodes, ProductCodesBuilder, sub_vectors, training_rows


@dataclass(frozen=True)
class GraphSetting:
    """One graph to build: usearch's stored dtype, connectivity (M) and expansion_add."""

    dtype: str
    connectivity: int
    expansion_add: int


SETTINGS = (GraphSetting("i8", 16, 128), GraphSetting("f16", 16, 128), GraphSetting("i8", 12, 128))
"""Graphs built at every size: the recommended one, f16 codes, and fewer links."""

EXPANSION_SEARCH = (64, 128, 256, 512)
"""ef_search values timed on each graph."""

COUNTS = (10, 50)
"""Candidates re-ranked exactly (recall is computed for each; timing uses the largest)."""

CODE_COUNTS = (64, 256, 1024)
"""Candidates of the product codes (``store/product_codes.py``) re-ranked exactly, each timed:
the codes read every face, so the count costs little and recall is what it buys."""

MATCH_THRESHOLD = 80.0
"""``FaceMatchThreshold`` for ``recall_at_1_within_threshold``: Rekognition's default."""

DISTRACTORS = ("clustered", "fitted")
"""Kinds of synthetic distractors (see the module's docstring)."""

SYNTHETIC_PROBES = 300
EXACT_SCANS = 60
"""Exact int8 scans timed at each size (the index's ``search``, limit 10)."""
EXACT_SCAN_UP_TO = 2_000_000
"""Above this size the exact scan is not timed here: its index would copy every face again, more
memory than the node has at 10M (``facegate bench index`` times it at any size)."""


def run_ann_bench(sizes: tuple[int, ...] = (100_000,), faces_dir: Path | None = None,
                  settings: tuple[GraphSetting, ...] = SETTINGS, distractors: tuple[str, ...] = DISTRACTORS,
                  build_threads: int = 1, seed: int = 11) -> dict[str, Any]:
    """Every figure at each size in ``sizes`` (faces in all, real ones included) and kind of
    distractors, in one run. About 10 minutes at 100k on a quiet machine (describing ~2,300
    photos, then single-threaded builds of about 40 s); 1M adds about 20 minutes per graph on
    one thread, so larger runs may build on ``build_threads`` (searches stay on one thread)."""
    faces_dir = faces_dir or Path(os.environ.get("FACEGATE_TEST_FACES", "../shared/faces"))
    gallery, probes = real_faces(faces_dir)
    radius = load_engine("sface").calibration.distance_for(MATCH_THRESHOLD)
    runs = [_run_size(faces, kind, gallery, probes, settings, radius, build_threads, seed)
            for faces in sizes for kind in distractors]
    return {
        "library": "usearch (HNSW), metric cos; faiss 4-bit product-code fast scan (the index's from 500k faces); "
                   "exact float64 re-rank of the candidates",
        "real_gallery": len(gallery), "real_probes": len(probes), "synthetic_probes": SYNTHETIC_PROBES,
        "match_threshold": MATCH_THRESHOLD, "match_distance": radius,
        "build_threads": build_threads, "search_threads": 1, "cpu_count": os.cpu_count(),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "(default)"),
        "sizes": runs,
    }


def real_faces(faces_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """sface descriptors of every LFW person's first photo (the gallery) and of the second photo
    of people who have one (the probes, in the gallery's order of people), computed now."""
    lfw = faces_dir / "lfw_erstrong"
    folders = [p for p in sorted(lfw.iterdir()) if p.is_dir() and not p.name.startswith("_")]
    people = [photos for photos in (sorted(p.glob("*.jpg"))[:2] for p in folders) if photos]
    paths = [str(path) for photos in people for path in photos]
    described = iter(describe_photos(paths, model="sface", policy="center", label="describing LFW photos"))
    gallery, probes = [], []
    for photos in people:
        first = next(described).descriptor
        second = next(described).descriptor if len(photos) > 1 else None
        if first is not None:
            gallery.append(first)
            if second is not None:
                probes.append(second)
    return np.array(gallery, dtype=np.float32), np.array(probes, dtype=np.float32)


def fitted_descriptors(rng: np.random.Generator, count: int, real: np.ndarray) -> np.ndarray:
    """``count`` float32 unit vectors drawn from a Gaussian with the mean and covariance of ``real``."""
    mean, covariance = real.astype(np.float64).mean(axis=0), np.cov(real.astype(np.float64).T)
    factor = np.linalg.cholesky(covariance + 1e-9 * np.eye(len(mean)))
    out = np.empty((count, len(mean)), dtype=np.float32)
    for start in range(0, count, 100_000):
        end = min(start + 100_000, count)
        block = mean + rng.standard_normal((end - start, len(mean))) @ factor.T
        out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _run_size(faces: int, kind: str, gallery: np.ndarray, probes: np.ndarray, settings: tuple[GraphSetting, ...],
              radius: float, build_threads: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    count = faces - len(gallery)
    if kind == "clustered":
        made = clustered_descriptors(rng, count)
    else:
        made = fitted_descriptors(rng, count, np.concatenate([gallery, probes]))
    vectors = np.concatenate([made, gallery])
    del made  # at 10M each copy of the faces is 5 GB
    vectors = vectors[rng.permutation(faces)]  # real faces spread through the rows, as enrolments would be
    synthetic = vectors[rng.integers(0, faces, SYNTHETIC_PROBES)]
    synthetic += 0.3 * rng.standard_normal(synthetic.shape).astype(np.float32) / np.sqrt(DIMENSION)
    synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
    truth_real, real_dots = _exact_nearest(vectors, probes)
    truth_synthetic, _ = _exact_nearest(vectors, synthetic)
    within = np.sqrt(np.maximum(2.0 - 2.0 * real_dots, 0.0)) <= radius
    graphs = [_measure_graph(s, vectors, probes, synthetic, truth_real, truth_synthetic, within, build_threads)
              for s in settings]
    return {"faces": faces, "distractors": kind, "real_probes_within_threshold": int(within.sum()),
            "exact_scan": _time_exact_scan(vectors, synthetic[:EXACT_SCANS], radius) if faces <= EXACT_SCAN_UP_TO else None,
            "product_codes": _measure_product_codes(vectors, probes, synthetic, truth_real, truth_synthetic, within),
            "graphs": graphs}


def _measure_product_codes(vectors: np.ndarray, probes: np.ndarray, synthetic: np.ndarray, truth_real: np.ndarray,
                           truth_synthetic: np.ndarray, within: np.ndarray) -> dict[str, Any]:
    """The product codes the index uses from ``APPROXIMATE_FROM`` faces, built as a snapshot builds
    them (trained on a sample, one thread), at each of ``CODE_COUNTS`` candidates."""
    started = time.perf_counter()
    builder = ProductCodesBuilder(vectors[training_rows(len(vectors))])
    builder.add(vectors)
    codes = builder.built()
    build_s = time.perf_counter() - started
    searches = []
    for count in CODE_COUNTS:
        real = _search_codes(codes, count, vectors, probes, truth_real)
        synth = _search_codes(codes, count, vectors, synthetic, truth_synthetic)
        searches.append({
            "candidates": count, "recall_at_1": real["hits"].mean(), "recall_at_1_within_threshold": real["hits"][within].mean(),
            "recall_at_1_synthetic": synth["hits"].mean(),
            "search_p50_ms": _percentile_ms(real["seconds"], 50), "search_p99_ms": _percentile_ms(real["seconds"], 99),
            "loadavg": os.getloadavg()[0],
        })
    return {"build_s": round(build_s, 1), "bytes_per_face": sub_vectors(DIMENSION) * BITS // 8, "searches": searches}


def _search_codes(codes: ProductCodes, count: int, vectors: np.ndarray, probes: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    hits, seconds = [], []
    for probe, nearest in zip(probes, truth):
        started = time.perf_counter()
        first = _reranked_first(vectors, probe, codes.candidates(probe, count))
        seconds.append(time.perf_counter() - started)
        hits.append(first == nearest)
    return {"hits": np.array(hits), "seconds": np.array(seconds)}


def _exact_nearest(vectors: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each probe's nearest face by float64 brute force, and its dot product."""
    rows, dots = np.empty(len(probes), dtype=np.int64), np.full(len(probes), -np.inf)
    for start in range(0, len(vectors), 200_000):
        block = vectors[start:start + 200_000].astype(np.float64) @ probes.astype(np.float64).T
        best = block.argmax(axis=0)
        better = block[best, np.arange(len(probes))] > dots
        rows[better] = start + best[better]
        dots[better] = block[best, np.arange(len(probes))][better]
    return rows, dots


def _measure_graph(setting: GraphSetting, vectors: np.ndarray, probes: np.ndarray, synthetic: np.ndarray,
                   truth_real: np.ndarray, truth_synthetic: np.ndarray, within: np.ndarray, build_threads: int) -> dict[str, Any]:
    rss_before = _rss_bytes()
    started = time.perf_counter()
    index = ApproximateIndex(DIMENSION, setting.dtype, setting.connectivity, setting.expansion_add)
    index.build(vectors, threads=build_threads)
    build_s = time.perf_counter() - started
    load_during_build = os.getloadavg()[0]
    rss_added = _rss_bytes() - rss_before
    with tempfile.TemporaryDirectory() as tmp:
        index.save(Path(tmp) / "graph.usearch")
        file_bytes = (Path(tmp) / "graph.usearch").stat().st_size
    faces = len(vectors)
    searches = []
    for expansion in EXPANSION_SEARCH:
        index.expansion_search = expansion
        real = _search_all(index, vectors, probes, truth_real)
        synth = _search_all(index, vectors, synthetic, truth_synthetic)
        searches.append({
            "expansion_search": expansion,
            **{f"recall_at_1_count_{c}": real[c].mean() for c in COUNTS},
            **{f"recall_at_1_within_threshold_count_{c}": real[c][within].mean() for c in COUNTS},
            **{f"recall_at_1_synthetic_count_{c}": synth[c].mean() for c in COUNTS},
            "search_p50_ms": _percentile_ms(real["seconds"], 50), "search_p99_ms": _percentile_ms(real["seconds"], 99),
            "synthetic_search_p50_ms": _percentile_ms(synth["seconds"], 50),
            "loadavg": os.getloadavg()[0],
        })
    return {
        "dtype": setting.dtype, "connectivity": setting.connectivity, "expansion_add": setting.expansion_add,
        "build_s": round(build_s, 1), "build_loadavg": load_during_build,
        "memory_usage_bytes_per_face": index.memory_bytes() / faces, "rss_added_bytes_per_face": rss_added / faces,
        "file_bytes_per_face": file_bytes / faces, "searches": searches,
    }


def _search_all(index: ApproximateIndex, vectors: np.ndarray, probes: np.ndarray, truth: np.ndarray) -> dict[Any, np.ndarray]:
    """For each count, whether each probe's re-ranked first candidate is its exact nearest;
    and the seconds each search took (candidates plus re-rank, at the largest count)."""
    hits: dict[Any, list[bool]] = {count: [] for count in COUNTS}
    seconds = []
    for probe, nearest in zip(probes, truth):
        started = time.perf_counter()
        rows = index.candidates(probe, max(COUNTS))
        first = _reranked_first(vectors, probe, rows)
        seconds.append(time.perf_counter() - started)
        for count in COUNTS:
            hits[count].append(first == nearest if count == max(COUNTS) else _reranked_first(vectors, probe, rows[:count]) == nearest)
    return {**{count: np.array(h) for count, h in hits.items()}, "seconds": np.array(seconds)}


def _reranked_first(vectors: np.ndarray, probe: np.ndarray, rows: np.ndarray) -> int:
    dots = vectors[rows].astype(np.float64) @ probe.astype(np.float64)
    return int(rows[np.argmax(dots)]) if len(rows) else -1


def _time_exact_scan(vectors: np.ndarray, probes: np.ndarray, radius: float) -> dict[str, float]:
    """The exact index's search (int8 scan, exact re-rank; limit 10, the SearchFaces
    default radius) at the same N, for the exact-versus-approximate switch size."""
    index = CollectionIndex(DIMENSION)
    index.reserve(len(vectors))
    index.extend([str(i) for i in range(len(vectors))], vectors, [None] * len(vectors))
    seconds = []
    for probe in probes:
        started = time.perf_counter()
        index.search(probe, radius, 10, False)
        seconds.append(time.perf_counter() - started)
    return {"p50_ms": _percentile_ms(np.array(seconds), 50), "p99_ms": _percentile_ms(np.array(seconds), 99)}


def _percentile_ms(seconds: np.ndarray, percentile: float) -> float:
    return round(float(np.percentile(seconds, percentile)) * 1000.0, 3)


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")
