"""Product codes (``store/product_codes.py``): large collections in a snapshot are searched
through faiss's fast scan, with exact distances, and fall back to the exact scan where the
codes could cut an answer short.

Collections here are made "large" by lowering ``APPROXIMATE_FROM``, and split into several code
blocks by lowering ``SHARD_ROWS``, so the parallel path runs too. The reference is the exact
index over the same faces; recall at real sizes is the scale benchmark's job."""

from __future__ import annotations

import uuid
from pathlib import Path

import faiss
import numpy as np
import pytest

from facegate.store import index_snapshot, product_codes
from facegate.store.face_index import CollectionIndex, FaceIndex
from facegate.store.index_snapshot import IndexSnapshots, LogMark
from facegate.store.product_codes import ProductCodes, ProductCodesBuilder, in_huge_pages

DIMENSION = 128
FACES = 6_000


def _clustered(rng: np.random.Generator, count: int) -> np.ndarray:
    centres = rng.standard_normal((200, DIMENSION))
    rows = centres[rng.integers(0, 200, count)] + 0.6 * rng.standard_normal((count, DIMENSION))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture
def faces() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(11)
    return [str(uuid.UUID(int=int(i) + 1)) for i in range(FACES)], _clustered(rng, FACES)


def _mapped(folder: Path, face_ids: list[str], vectors: np.ndarray, users: list[str | None] | None = None) -> CollectionIndex:
    """The collection as a process that mapped its snapshot holds it."""
    index = FaceIndex(DIMENSION)
    index.collection(1).extend(face_ids, vectors, users or [None] * len(face_ids))
    snapshots = IndexSnapshots(folder)
    assert snapshots.write(index, LogMark(1)) is not None
    with snapshots.locked(exclusive=False):
        snapshot = snapshots.open()
    assert snapshot is not None
    return snapshot.face_index().collection(1)


def _exact(face_ids: list[str], vectors: np.ndarray) -> CollectionIndex:
    exact = CollectionIndex(DIMENSION)
    exact.extend(face_ids, vectors, [None] * len(face_ids))
    return exact


@pytest.fixture
def large(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Collections from 2,000 faces get codes, in blocks of 2,500; returns the candidate counts asked for."""
    monkeypatch.setattr(index_snapshot, "APPROXIMATE_FROM", 2_000)
    monkeypatch.setattr(product_codes, "SHARD_ROWS", 2_500)
    asked: list[int] = []
    original = ProductCodes.candidates

    def counted(self: ProductCodes, probe: np.ndarray, count: int) -> np.ndarray:
        asked.append(count)
        return original(self, probe, count)

    monkeypatch.setattr(ProductCodes, "candidates", counted)
    return asked


def _probes(vectors: np.ndarray, count: int = 30) -> np.ndarray:
    rng = np.random.default_rng(5)
    picked = vectors[rng.choice(len(vectors), count, replace=False)] + 0.02 * rng.standard_normal((count, DIMENSION))
    return (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)


def _answer(index: CollectionIndex, probe: np.ndarray, radius: float, limit: int | None, users_only: bool = False):
    return [(n.face_id, round(n.distance, 12), n.user_id) for n in index.search(probe, radius, limit, users_only)]


def test_a_large_collection_is_searched_through_its_codes_with_exact_answers(tmp_path, faces, large):
    face_ids, vectors = faces
    mapped, exact = _mapped(tmp_path, face_ids, vectors), _exact(face_ids, vectors)
    assert mapped.base is not None and mapped.base.approximate is not None
    assert mapped.base.approximate.count == FACES
    for probe in _probes(vectors):
        assert _answer(mapped, probe, 0.9, 10) == _answer(exact, probe, 0.9, 10)
    assert large and all(count >= product_codes.CANDIDATES for count in large)


def test_a_collection_below_the_size_keeps_the_exact_scan(tmp_path, faces, large):
    face_ids, vectors = faces
    mapped = _mapped(tmp_path, face_ids[:1_500], vectors[:1_500])
    assert mapped.base is not None and mapped.base.approximate is None
    mapped.search(vectors[0], 0.9, 10, False)
    assert large == []


def test_removed_faces_are_never_answered_and_faces_added_since_are(tmp_path, faces, large):
    face_ids, vectors = faces
    mapped = _mapped(tmp_path, face_ids, vectors)
    probe = _probes(vectors, 1)[0]
    nearest = mapped.search(probe, 0.9, 1, False)[0].face_id
    mapped.remove(nearest)
    mapped.add("00000000-0000-0000-0000-00000000abcd", probe, "someone")
    answer = mapped.search(probe, 0.9, 5, False)
    assert answer[0].face_id == "00000000-0000-0000-0000-00000000abcd" and answer[0].user_id == "someone"
    assert nearest not in [n.face_id for n in answer]


def test_an_answer_the_codes_could_cut_short_comes_from_the_exact_scan(tmp_path, faces, large):
    """Every face is within distance 2: with no limit, all of them are the answer, far more
    than the candidates; with a small limit the candidates suffice."""
    face_ids, vectors = faces
    mapped, exact = _mapped(tmp_path, face_ids, vectors), _exact(face_ids, vectors)
    probe = _probes(vectors, 1)[0]
    assert len(mapped.search(probe, 2.0, None, False)) == FACES
    assert _answer(mapped, probe, 2.0, 5) == _answer(exact, probe, 2.0, 5)


def test_searches_for_users_scan_exactly(tmp_path, faces, large):
    face_ids, vectors = faces
    users: list[str | None] = [None] * FACES
    users[17] = "only-user"
    mapped = _mapped(tmp_path, face_ids, vectors, users)
    found = mapped.search(vectors[17], 2.0, 1, True)
    assert [(n.face_id, n.user_id) for n in found] == [(face_ids[17], "only-user")]
    assert large == []


def test_unreadable_codes_make_the_snapshot_unusable_not_wrong(tmp_path, faces, large):
    face_ids, vectors = faces
    _mapped(tmp_path, face_ids, vectors)
    snapshots = IndexSnapshots(tmp_path)
    folder = tmp_path / (tmp_path / "CURRENT").read_text().strip()
    codes = sorted(folder.glob("codes-*.faiss"))
    assert len(codes) == 3  # 6,000 faces in blocks of 2,500
    codes[1].write_bytes(b"not a faiss index")
    with snapshots.locked(exclusive=False):
        assert snapshots.open() is None


def test_a_block_holding_more_of_the_best_than_it_was_first_asked_for_is_asked_again(monkeypatch):
    """20 blocks of 1,000 faces; 200 near copies of the probe sit in one block, so the best 256
    are those 200 and 56 others: every block is first asked for its best 128, and the one
    with the copies must be asked again or 72 of them would be missed."""
    monkeypatch.setattr(product_codes, "SHARD_ROWS", 1_000)
    rng = np.random.default_rng(3)
    vectors = _clustered(rng, 20_000)
    probe = _probes(vectors, 1)[0]
    copies = probe + 0.01 * rng.standard_normal((200, DIMENSION)).astype(np.float32)
    vectors[7_300:7_500] = copies / np.linalg.norm(copies, axis=1, keepdims=True)
    builder = ProductCodesBuilder(vectors[:8_000])
    builder.add(vectors)
    codes = builder.built()
    searched: list[int] = []
    original = ProductCodes._search
    monkeypatch.setattr(ProductCodes, "_search", lambda self, q, blocks, counts: searched.extend(counts) or original(self, q, blocks, counts))

    found = codes.candidates(probe, 256)
    assert len(found) == 256 and np.all(np.diff(found) > 0)
    assert set(range(7_300, 7_500)) <= set(found.tolist())
    assert searched == [128] * 20 + [256]  # only the block with the copies was asked again


def test_every_block_is_moved_into_huge_pages_before_it_is_searched(monkeypatch):
    """200,000 faces are 6.4 MB of codes, whole 2 MB pages, which the scan streams through (the
    kernel's part is best effort, its effect measured in ``in_huge_pages``'s docstring)."""
    monkeypatch.setattr(product_codes, "SHARD_ROWS", 100_000)
    vectors = _clustered(np.random.default_rng(2), 200_000)
    builder = ProductCodesBuilder(vectors[:8_000])
    builder.add(vectors)
    moved: list[faiss.Index] = []
    monkeypatch.setattr(product_codes, "in_huge_pages", lambda shard: (moved.append(shard), in_huge_pages(shard)))
    codes = builder.built()
    assert moved == codes._shards and len(moved) == 2
    assert len(codes.candidates(vectors[0], 10)) == 10
