"""1:N candidates for a probe at a Rekognition similarity threshold, through the index.

A threshold is one distance through the collection's calibration. When the collection's
model normalises scores (``engine/score_normalisation.py``), a face's normalised distance
also depends on its own cluster, so the index is asked for everything within the widest
raw distance any cluster could bring inside the threshold, and each candidate is then
normalised and kept or dropped exactly. Results equal an exhaustive normalised search.
"""

from __future__ import annotations

import numpy as np

from facegate.engine.pipeline import FaceEngine
from facegate.store.face_index import FaceIndex, Neighbour
from facegate.store.pgvector_index import PgVectorIndex


def neighbours_within(
    index: FaceIndex | PgVectorIndex, engine: FaceEngine, collection_pk: int, probe: np.ndarray, threshold: float,
    limit: int | None = None, users_only: bool = False,
) -> list[Neighbour]:
    """Faces scoring at least ``threshold`` (0–100) against ``probe``, best first, at most
    ``limit``; each ``Neighbour.distance`` is the one the similarity is computed from.
    ``index`` is ``Store.index`` as the request first took it: brought current once, which
    every write committed before the request already was (a second catch-up would cost
    another database round trip and see only writes concurrent with this request)."""
    radius = engine.calibration.distance_for(threshold)
    normalisation = engine.normalisation
    if normalisation is None:
        return index.search(collection_pk, probe, radius, limit, users_only)
    probe_shift = normalisation.shift(probe)
    candidates = index.search(collection_pk, probe, normalisation.raw_radius(radius, float(probe_shift[0])), None, users_only)
    vectors = index.vectors(collection_pk, [n.face_id for n in candidates])
    present = [(n, v) for n, v in zip(candidates, vectors) if v is not None]  # deleted in between
    if not present:
        return []
    raw = np.array([n.distance for n, _ in present])
    normalised = normalisation.normalised(raw, probe_shift, normalisation.shift(np.stack([v for _, v in present])))
    kept = sorted(
        (Neighbour(n.face_id, float(d), n.user_id) for (n, _), d in zip(present, normalised) if d <= radius),
        key=lambda n: n.distance,
    )
    return kept if limit is None else kept[:limit]
