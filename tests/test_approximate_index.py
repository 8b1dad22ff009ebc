"""The approximate index proposes the right rows, forgets removed ones, and shares a saved graph.

Vectors are generated here: unit descriptors clustered like real ones (``bench/index_bench.py``),
and "clear mates", stored rows with a little fresh noise, whose exact nearest row is their own.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from facegate.bench.index_bench import clustered_descriptors
from facegate.bench.approximate_index import ApproximateIndex

FACES = 3000
COUNT = 10


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered_descriptors(np.random.default_rng(5), FACES, centres=40)


def mates(vectors: np.ndarray, rows: np.ndarray, seed: int = 6) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((len(rows), vectors.shape[1])).astype(np.float32)
    probes = vectors[rows] + 0.05 * noise / np.sqrt(vectors.shape[1])
    return probes / np.linalg.norm(probes, axis=1, keepdims=True)


def exact_nearest(vectors: np.ndarray, probe: np.ndarray) -> int:
    return int(np.argmax(vectors.astype(np.float64) @ probe.astype(np.float64)))


def built(vectors: np.ndarray) -> ApproximateIndex:
    index = ApproximateIndex(vectors.shape[1])
    index.build(vectors, threads=1)
    return index


def test_candidates_contain_the_exact_nearest_of_clear_mates(vectors: np.ndarray) -> None:
    index = built(vectors)
    rows = np.arange(0, FACES, 37)
    for row, probe in zip(rows, mates(vectors, rows)):
        assert exact_nearest(vectors, probe) == row
        assert row in index.candidates(probe, COUNT)
    assert len(index) == FACES


def test_removed_rows_are_never_proposed(vectors: np.ndarray) -> None:
    index = built(vectors)
    probe = mates(vectors, np.array([42]))[0]
    assert index.candidates(probe, COUNT)[0] == 42
    index.remove(42)
    assert 42 not in index.candidates(probe, COUNT)
    assert len(index) == FACES - 1


def test_an_added_row_replaces_the_row_it_reuses(vectors: np.ndarray) -> None:
    index = built(vectors)
    index.add(7, vectors[900])
    assert index.candidates(mates(vectors, np.array([900]))[0], 2).tolist() in ([7, 900], [900, 7])
    assert 7 not in index.candidates(mates(vectors, np.array([7]))[0], 1)
    assert len(index) == FACES


def test_a_saved_index_viewed_again_proposes_the_same_rows(vectors: np.ndarray, tmp_path: Path) -> None:
    index = built(vectors)
    index.save(tmp_path / "graph.usearch")
    viewed = ApproximateIndex.view(tmp_path / "graph.usearch")
    assert viewed.viewed and len(viewed) == FACES
    for probe in mates(vectors, np.arange(5, FACES, 301)):
        assert viewed.candidates(probe, COUNT).tolist() == index.candidates(probe, COUNT).tolist()


def test_a_viewed_index_keeps_changes_beside_the_mapped_graph(vectors: np.ndarray, tmp_path: Path) -> None:
    built(vectors[:-1]).save(tmp_path / "graph.usearch")  # the last row arrives after the snapshot
    viewed = ApproximateIndex.view(tmp_path / "graph.usearch")
    newest, removed, moved = FACES - 1, 100, 200
    viewed.add(newest, vectors[newest])
    viewed.remove(removed)
    viewed.add(moved, vectors[300])  # row 200 now holds another face
    assert viewed.overlay_size == 4 and len(viewed) == FACES - 1
    probes = mates(vectors, np.array([newest, removed, 300]))
    assert viewed.candidates(probes[0], COUNT)[0] == newest
    assert removed not in viewed.candidates(probes[1], COUNT)
    assert {moved, 300} <= set(viewed.candidates(probes[2], COUNT).tolist())

    viewed.save(tmp_path / "merged.usearch")
    merged = ApproximateIndex.view(tmp_path / "merged.usearch")
    assert merged.overlay_size == 0 and len(merged) == FACES - 1
    for probe in probes:
        assert merged.candidates(probe, COUNT)[:1].tolist() == viewed.candidates(probe, COUNT)[:1].tolist()


def test_a_viewed_index_cannot_be_rebuilt(vectors: np.ndarray, tmp_path: Path) -> None:
    built(vectors[:100]).save(tmp_path / "graph.usearch")
    with pytest.raises(ValueError, match="read-only"):
        ApproximateIndex.view(tmp_path / "graph.usearch").build(vectors)


def _candidates_in_child(path: str, probes: np.ndarray) -> tuple[list[list[int]], bool]:
    """Run in a spawned process: view ``path``, search, and report whether the file is mapped."""
    index = ApproximateIndex.view(path)
    found = [index.candidates(probe, COUNT).tolist() for probe in probes]
    mapped = any(line.rstrip().endswith(path) for line in Path("/proc/self/maps").read_text().splitlines())
    return found, mapped


def test_two_processes_search_one_mapped_file(vectors: np.ndarray, tmp_path: Path) -> None:
    path = str(tmp_path / "graph.usearch")
    index = built(vectors)
    index.save(path)
    probes = mates(vectors, np.arange(11, FACES, 257))
    expected = [index.candidates(probe, COUNT).tolist() for probe in probes]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        answers = pool.starmap(_candidates_in_child, [(path, probes), (path, probes)])
    for found, mapped in answers:
        assert mapped, "the child loaded a copy instead of mapping the saved file"
        assert found == expected


def test_the_graph_library_and_onnxruntime_load_into_one_process_in_either_order() -> None:
    """usearch 2.26.3 to 2.26.6 crash the interpreter (SIGSEGV) when onnxruntime, which runs the
    face models, is imported after them, as a server that opens its store first would do."""
    for first, second in (("facegate.bench.approximate_index", "onnxruntime"), ("onnxruntime", "facegate.bench.approximate_index")):
        loaded = subprocess.run([sys.executable, "-c", f"import {first}; import {second}"], capture_output=True, timeout=120)
        assert loaded.returncode == 0, f"importing {first} then {second}: exit {loaded.returncode}, {loaded.stderr[-500:]!r}"


def test_concurrent_searches_of_a_viewed_index_match_serial_ones(vectors: np.ndarray, tmp_path: Path) -> None:
    built(vectors).save(tmp_path / "graph.usearch")
    viewed = ApproximateIndex.view(tmp_path / "graph.usearch")
    probes = mates(vectors, np.arange(3, FACES, 29))
    serial = [viewed.candidates(probe, COUNT).tolist() for probe in probes]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda probe: viewed.candidates(probe, COUNT).tolist(), list(probes) * 4))
    assert concurrent == serial * 4
