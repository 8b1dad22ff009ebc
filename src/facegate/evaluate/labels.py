"""Demographic labels: a TSV with a ``path`` column plus attribute columns (gender, race, age, ...).

Paths are relative to the TSV's own folder, so one labels file can describe several
datasets; callers keep only the rows under the dataset folder they evaluate. Empty
cells mean "unlabelled", never a group of their own.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

NOT_ATTRIBUTES = {"path", "label_source"}


def absolute(path: Path) -> Path:
    """Absolute and normalised, but symlinks kept: a dataset may be a folder of links."""
    return Path(os.path.normpath(path.absolute()))


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    attributes: dict[str, str]


def read_labels(tsv: Path, under: Path | None = None) -> list[LabelledPhoto]:
    """Labelled photos from ``tsv``; with ``under``, only those inside that folder."""
    base = absolute(tsv).parent
    root = absolute(under) if under is not None else None
    photos = []
    with tsv.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            path = absolute(base / row["path"])
            if root is not None and not path.is_relative_to(root):
                continue
            attributes = {k: v.strip() for k, v in row.items() if k not in NOT_ATTRIBUTES and v and v.strip()}
            photos.append(LabelledPhoto(path, attributes))
    return photos
