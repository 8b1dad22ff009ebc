"""Which face in a video frame is which person: ``Person.Index`` for GetFaceSearch.

A greedy tracker over sampled frames. A face continues a person seen within
``MAX_GAP_MS`` whose last box overlaps it (intersection over union at least ``MIN_IOU``),
or else the person whose last descriptor it most resembles (similarity at least
``MIN_SIMILARITY``, 0–100, any time earlier), or else it is a new person. Each person
is matched at most once per frame. Indexes count from 0 in order of first sighting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from facegate.engine.results import PixelBox

MAX_GAP_MS = 1000
"""A box may continue a person last seen up to a second earlier (five samples at 5 fps)."""

MIN_IOU = 0.3
MIN_SIMILARITY = 90.0
"""Re-identifying a person after a cut by descriptor alone asks for near-certainty."""


@dataclass
class _Person:
    index: int
    box: PixelBox
    seen_ms: int
    descriptor: np.ndarray


def iou(a: PixelBox, b: PixelBox) -> float:
    width = max(0.0, min(a.right, b.right) - max(a.left, b.left))
    height = max(0.0, min(a.bottom, b.bottom) - max(a.top, b.top))
    overlap = width * height
    union = a.width * a.height + b.width * b.height - overlap
    return overlap / union if union > 0 else 0.0


class PersonTracker:
    """Feed it frames in time order; ``similarity(a, b)`` is the engine's (0–100, (n, m))."""

    def __init__(self, similarity: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self._similarity = similarity
        self._people: list[_Person] = []

    def assign(self, timestamp_ms: int, boxes: Sequence[PixelBox], descriptors: np.ndarray) -> list[int]:
        """The person index of each face of one frame (boxes in the frame's pixels)."""
        taken: set[int] = set()
        indexes: list[int] = []
        similarities = (
            self._similarity(descriptors, np.stack([p.descriptor for p in self._people]))
            if self._people and len(boxes) else np.empty((len(boxes), 0))
        )
        for face, box in enumerate(boxes):
            person = self._by_box(timestamp_ms, box, taken) or self._by_descriptor(similarities[face], taken)
            if person is None:
                person = _Person(len(self._people), box, timestamp_ms, descriptors[face])
                self._people.append(person)
            person.box, person.seen_ms, person.descriptor = box, timestamp_ms, descriptors[face]
            taken.add(person.index)
            indexes.append(person.index)
        return indexes

    def _by_box(self, timestamp_ms: int, box: PixelBox, taken: set[int]) -> _Person | None:
        recent = [p for p in self._people if p.index not in taken and timestamp_ms - p.seen_ms <= MAX_GAP_MS]
        best = max(recent, key=lambda p: iou(p.box, box), default=None)
        return best if best is not None and iou(best.box, box) >= MIN_IOU else None

    def _by_descriptor(self, similarities: np.ndarray, taken: set[int]) -> _Person | None:
        candidates = [(float(similarities[p.index]), p) for p in self._people[: len(similarities)] if p.index not in taken]
        best = max(candidates, key=lambda pair: pair[0], default=None)
        return best[1] if best is not None and best[0] >= MIN_SIMILARITY else None
