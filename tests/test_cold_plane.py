"""Snapshot planes read with pread return exactly what the file holds, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from facegate.store import cold_plane
from facegate.store.cold_plane import ColdPlane


@pytest.fixture(params=["cached", "uncached"])
def cache(request, monkeypatch):
    """Runs found in the page cache are read at once; the others (here: all of them, as after a
    restart) are announced and read the slow way, and must come back the same."""
    if request.param == "uncached":
        monkeypatch.setattr(cold_plane, "_read_if_cached", lambda descriptor, into, at: False)
    return request.param


def test_scattered_repeated_and_consecutive_rows_read_back_exactly(tmp_path, cache):
    rng = np.random.default_rng(1)
    plane = rng.integers(0, 2**16, (1000, 128), dtype=np.uint16)
    ids = np.array([f"{i:036d}".encode() for i in range(1000)], dtype="S36")
    np.save(tmp_path / "low.npy", plane)
    np.save(tmp_path / "ids.npy", ids)
    low = ColdPlane(tmp_path / "low.npy", np.load(tmp_path / "low.npy", mmap_mode="r"))
    face_ids = ColdPlane(tmp_path / "ids.npy", np.load(tmp_path / "ids.npy", mmap_mode="r"))
    rows = np.array([999, 3, 4, 5, 5, 0, 500, 6, 998])
    assert np.array_equal(low[rows], plane[rows])
    assert list(face_ids[rows]) == list(ids[rows])
    part = low.rows(100, 200)
    assert len(part) == 100 and np.array_equal(part[np.array([0, 99, 50])], plane[[100, 199, 150]])
    assert low[np.array([], dtype=np.int64)].shape == (0, 128)


def test_a_row_range_outlives_the_plane_it_was_taken_from(tmp_path):
    plane = np.arange(20, dtype=np.uint16).reshape(10, 2)
    np.save(tmp_path / "p.npy", plane)
    part = ColdPlane(tmp_path / "p.npy", np.load(tmp_path / "p.npy", mmap_mode="r")).rows(5, 10)
    (tmp_path / "p.npy").unlink()  # a newer snapshot deletes the old files
    assert np.array_equal(part[np.array([0, 4])], plane[[5, 9]])
