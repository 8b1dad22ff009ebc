"""Photo sets for evaluation: who is in each photo, and which pairs to compare.

Identity comes from an ``identity`` column of the labels TSV when it has one, else from
a ``MANIFEST.tsv`` beside it (UTKFace's gives every photo its own identity), else from
the photo's folder (one folder per person). Folders starting with ``_`` hold labels,
not people. Pair sampling is seeded, so every report is reproducible.
"""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegate.evaluate.labels import absolute

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


def photos_by_folder(dataset_dir: Path) -> dict[Path, str]:
    """Every photo under ``dataset_dir`` mapped to its folder's name (its identity)."""
    out = {}
    for path in sorted(dataset_dir.rglob("*")):
        relative = path.relative_to(dataset_dir)
        if path.suffix.lower() in PHOTO_SUFFIXES and not any(part.startswith("_") for part in relative.parts):
            out[absolute(path)] = path.parent.name
    return out


def identities_from_manifest(labels_tsv: Path) -> dict[Path, str]:
    """Identities from the labels file itself, or the MANIFEST.tsv in its folder; empty if neither."""
    for source in (labels_tsv, labels_tsv.parent / "MANIFEST.tsv"):
        if not source.is_file():
            continue
        with source.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t")
            if reader.fieldnames and "identity" in reader.fieldnames:
                return {absolute(source.parent / row["path"]): row["identity"] for row in reader}
    return {}


@dataclass(frozen=True)
class Pairs:
    """Indices into a photo list: genuine (same identity) and impostor (different) pairs."""

    genuine: np.ndarray  # (n, 2)
    impostor: np.ndarray  # (m, 2)


def sample_pairs(identities: list[str], max_genuine: int, impostors: int, seed: int) -> Pairs:
    """All genuine pairs (a seeded sample above ``max_genuine``) and seeded impostor pairs."""
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[int]] = {}
    for index, identity in enumerate(identities):
        by_identity.setdefault(identity, []).append(index)
    genuine = np.array(
        [pair for members in by_identity.values() for pair in itertools.combinations(members, 2)], dtype=np.int64
    ).reshape(-1, 2)
    if len(genuine) > max_genuine:
        genuine = genuine[np.sort(rng.choice(len(genuine), max_genuine, replace=False))]
    return Pairs(genuine, _impostor_pairs(np.array(identities), impostors, rng))


def _impostor_pairs(labels: np.ndarray, wanted: int, rng: np.random.Generator) -> np.ndarray:
    """Distinct unordered pairs of different identities: all of them when there are at most
    ``wanted``, else a seeded sample without replacement (duplicates would make the
    confidence intervals look tighter than the data allows)."""
    n = len(labels)
    if n * (n - 1) // 2 <= 4 * wanted:
        a, b = np.triu_indices(n, 1)
        keep = labels[a] != labels[b]
        every = np.column_stack([a[keep], b[keep]])
        return every if len(every) <= wanted else every[np.sort(rng.choice(len(every), wanted, replace=False))]
    chosen = np.empty((0, 2), dtype=np.int64)
    while len(chosen) < wanted:
        a, b = rng.integers(0, n, 2 * wanted), rng.integers(0, n, 2 * wanted)
        fresh = np.column_stack([np.minimum(a, b), np.maximum(a, b)])[labels[a] != labels[b]]
        chosen = np.unique(np.concatenate([chosen, fresh]), axis=0)
    return chosen[np.sort(rng.choice(len(chosen), wanted, replace=False))]
