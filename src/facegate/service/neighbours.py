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
from facegate.store.database import Store
from facegate.store.face_index import Neighbour


def neighbours_within(
    store: Store, engine: FaceEngine, collection_pk: int, probe: np.ndarray, threshold: float,
    limit: int | None = None, users_only: bool = False,
) -> list[Neighbour]:
    """Faces scoring at least ``threshold`` (0–100) against ``probe``, best first, at most
    ``limit``; each ``Neighbour.distance`` is the one the similarity is computed from."""
    radius = engine.calibration.distance_for(threshold)
    normalisation = engine.normalisation
    if normalisation is None:
        return store.index.search(collection_pk, probe, radius, limit, users_only)
    probe_shift = normalisation.shift(probe)
    candidates = store.index.search(collection_pk, probe, normalisation.raw_radius(radius, float(probe_shift[0])), None, users_only)
    vectors = store.index.vectors(collection_pk, [n.face_id for n in candidates])
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
