"""The LFW pairs file format.

First line: ``folds<TAB>pairs_per_class``. Then, for each fold, ``pairs_per_class``
matched lines ``name<TAB>n1<TAB>n2`` followed by as many mismatched lines
``name1<TAB>n1<TAB>name2<TAB>n2``. Photos live at ``Name/Name_NNNN.jpg``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LfwPair:
    """``fold`` counts from 0; paths are relative to the images folder."""

    fold: int
    same: bool
    path_a: str
    path_b: str


def photo_path(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def parse_pairs(text: str) -> list[LfwPair]:
    """Pairs in file order; raises ValueError naming the line of any malformed input."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("pairs file is empty")
    header = lines[0].split()
    if len(header) != 2 or not all(h.isdigit() for h in header):
        raise ValueError("line 1: expected 'folds<TAB>pairs_per_class'")
    folds, per_class = int(header[0]), int(header[1])
    expected = folds * per_class * 2
    if len(lines) - 1 != expected:
        raise ValueError(f"expected {expected} pair lines for {folds} folds of {per_class}+{per_class}, found {len(lines) - 1}")
    pairs = []
    for index, line in enumerate(lines[1:]):
        fold, position = divmod(index, 2 * per_class)
        fields = line.split("\t") if "\t" in line else line.split()
        same = position < per_class
        try:
            if same and len(fields) == 3:
                pairs.append(LfwPair(fold, True, photo_path(fields[0], fields[1]), photo_path(fields[0], fields[2])))
            elif not same and len(fields) == 4:
                pairs.append(LfwPair(fold, False, photo_path(fields[0], fields[1]), photo_path(fields[2], fields[3])))
            else:
                kind = "matched (name n1 n2)" if same else "mismatched (name1 n1 name2 n2)"
                raise ValueError(f"expected a {kind} pair")
        except ValueError as exc:
            raise ValueError(f"line {index + 2}: {exc}") from None
    return pairs


def read_pairs(path: Path) -> list[LfwPair]:
    return parse_pairs(path.read_text())
