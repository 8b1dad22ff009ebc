"""``facegate evaluate identification``: 1:N search through the real collection path.

A throwaway facegate instance (its own data directory, store, index and governance gate)
enrols one photo per gallery identity with IndexFaces, then runs SearchFacesByImage for
every probe, exactly as a client would. Nothing here computes a similarity itself, so
the figures describe what users get.

Vocabulary (ISO/IEC 19795-1, as NIST FRVT 1:N uses it):
- a *mated* search has the probe's identity enrolled; a *non-mated* one does not;
- rank-k identification rate: mated searches whose mate is among the top k candidates;
- FPIR(T): non-mated searches that return any candidate with similarity >= T;
- FNIR(T): mated searches whose mate is not in the candidate list with similarity >= T.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegate.engine.face_models import DEFAULT_FACE_MODEL, load_engine
from facegate.evaluate.datasets import photos_by_folder
from facegate.evaluate.describe import progress_bar
from facegate.evaluate.stats import error_rates, threshold_for_fmr, wilson_interval
from facegate.governance.gate import Gate, Request
from facegate.governance.identity import LOCAL_OPERATOR
from facegate.server import Facegate
from facegate.store.database import sqlite_url
from facegate.service.exceptions import RekognitionError

COLLECTION = "facegate-evaluation"
CANDIDATES = 50
"""Candidate list length L: NIST's FRVT 1:N reports use 50."""
TARGET_FPIRS = (0.01, 0.001)
REPORTED_SIMILARITIES = (80, 90, 95, 99)


@dataclass(frozen=True)
class Search:
    """One probe's outcome. ``rank`` is 1-based, 0 when the mate is not among the candidates
    (or the search is non-mated); ``mate_similarity`` is 0 then. ``top_similarity`` is the
    best candidate's similarity, 0 when there is none. ``error`` is the AWS error code when
    the search itself failed (no face in the probe): it counts as a miss, never dropped."""

    path: str
    mated: bool
    rank: int
    mate_similarity: float
    top_similarity: float
    error: str | None


@dataclass(frozen=True)
class Gallery:
    face_identity: dict[str, str]  # FaceId -> identity
    enrolled: dict[str, str]  # identity -> enrolled photo path
    unenrollable: list[str]  # identities none of whose photos could be indexed


def identification_rates(searches: list[Search]) -> dict[str, Any]:
    """Rank-1/rank-5 rates, FNIR at target FPIRs and FPIR/FNIR at fixed similarities.

    Pure arithmetic on search outcomes, so the tests can check it on constructed cases."""
    mated = [s for s in searches if s.mated]
    non_mated = [s for s in searches if not s.mated]
    ranks = np.array([s.rank for s in mated], dtype=np.int64)
    scores = search_scores(searches)
    mate_scores, top_scores = scores["mated"], scores["non_mated"]
    out: dict[str, Any] = {"mated_searches": len(mated), "non_mated_searches": len(non_mated)}
    for k in (1, 5):
        hits = int(((ranks >= 1) & (ranks <= k)).sum())
        out[f"rank{k}"] = _proportion(hits, len(mated))
    out["fnir_at_fpir"] = {}
    for target in TARGET_FPIRS:
        if not len(non_mated):
            out["fnir_at_fpir"][f"{target:g}"] = None
            continue
        threshold, resolvable = threshold_for_fmr(top_scores, target)
        fpir, _ = error_rates(np.empty(0), top_scores, threshold)
        misses = int((mate_scores < threshold).sum())
        out["fnir_at_fpir"][f"{target:g}"] = {
            "similarity": threshold, "fpir": fpir, "small_sample": not resolvable, **_proportion(misses, len(mated), "fnir"),
        }
    out["at_similarity"] = {}
    for similarity in REPORTED_SIMILARITIES:
        false_positives = int((top_scores >= similarity).sum())
        misses = int((mate_scores < similarity).sum())
        out["at_similarity"][str(similarity)] = {
            **_proportion(false_positives, len(non_mated), "fpir"), **_proportion(misses, len(mated), "fnir"),
        }
    return out


def search_scores(searches: list[Search]) -> dict[str, np.ndarray]:
    """The scores FNIR and FPIR are computed from: each mated search's mate similarity
    (-inf when the mate was not returned, so it misses at every threshold) and each
    non-mated search's best candidate similarity."""
    return {
        "mated": np.array([s.mate_similarity if s.rank else -math.inf for s in searches if s.mated], dtype=float),
        "non_mated": np.array([s.top_similarity for s in searches if not s.mated], dtype=float),
    }


def _proportion(count: int, total: int, name: str = "rate") -> dict[str, Any]:
    low, high = wilson_interval(count, total)
    return {name: count / total if total else None, f"{name}_interval": [low, high], f"{name}_count": count}


def identification_report(
    gallery_dir: Path, probes_dir: Path, distractors_dir: Path | None = None, threads: int = 2,
    model: str = DEFAULT_FACE_MODEL,
) -> tuple[dict[str, Any], list[Search]]:
    """Enrol the gallery, search every probe and distractor, and report.

    The first photo (in sorted order) that indexes becomes an identity's gallery entry;
    the rest of its photos in ``probes_dir`` are mated probes. Probes of identities not in
    the gallery, and every photo under ``distractors_dir``, are non-mated probes.
    """
    started = time.monotonic()
    gallery_photos = _by_identity(photos_by_folder(gallery_dir))
    if not gallery_photos:
        raise ValueError(f"no JPEG or PNG photos under {gallery_dir}: the gallery is one folder per identity")
    with tempfile.TemporaryDirectory(prefix="facegate-identification-") as data_dir:
        facegate = Facegate.open(Path(data_dir), engine=load_engine(model), database_url=sqlite_url(Path(data_dir)))
        try:
            gate = facegate.gate
            _call(gate, "CreateCollection", {"CollectionId": COLLECTION})
            gallery = _enrol(gate, gallery_photos)
            probes = _probes(photos_by_folder(probes_dir), gallery, distractors_dir)
            searches = _search_all(gate, gallery, probes, threads)
        finally:
            facegate.store.close()
        model_version = facegate.engine.model_version
        calibration = facegate.engine.calibration
    report = {
        "gallery_dir": str(gallery_dir),
        "probes_dir": str(probes_dir),
        "distractors_dir": str(distractors_dir) if distractors_dir else None,
        "gallery_identities": len(gallery_photos),
        "enrolled": len(gallery.enrolled),
        "unenrollable_identities": gallery.unenrollable,
        "candidate_list_length": CANDIDATES,
        **identification_rates(searches),
        "failed_searches": [{"path": s.path, "mated": s.mated, "error": s.error} for s in searches if s.error],
        "model_version": model_version,
        "calibration": {"slope": calibration.slope, "midpoint": calibration.midpoint},
        "seconds": round(time.monotonic() - started, 1),
        "date": dt.date.today().isoformat(),
    }
    return report, searches


def _by_identity(photos: dict[Path, str]) -> dict[str, list[Path]]:
    grouped: dict[str, list[Path]] = {}
    for path, identity in photos.items():
        grouped.setdefault(identity, []).append(path)
    return grouped


def _call(gate: Gate, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request through the governance gate, as the local operator (audited like any other)."""
    return gate.handle(Request(LOCAL_OPERATOR, operation, params, "local", str(uuid.uuid4()), None))


def _enrol(gate: Gate, photos: dict[str, list[Path]]) -> Gallery:
    face_identity: dict[str, str] = {}
    enrolled: dict[str, str] = {}
    unenrollable: list[str] = []
    with progress_bar() as progress:
        task = progress.add_task("enrolling gallery", total=len(photos))
        for identity, paths in photos.items():
            for path in paths:
                response = _call(gate, "IndexFaces", {
                    "CollectionId": COLLECTION, "Image": {"Bytes": path.read_bytes()}, "MaxFaces": 1,
                })
                if response["FaceRecords"]:
                    face_identity[response["FaceRecords"][0]["Face"]["FaceId"]] = identity
                    enrolled[identity] = str(path)
                    break
            else:
                unenrollable.append(identity)
            progress.advance(task)
    return Gallery(face_identity, enrolled, unenrollable)


def _probes(photos: dict[Path, str], gallery: Gallery, distractors_dir: Path | None) -> list[tuple[Path, str | None]]:
    """(photo, identity if mated else None); gallery photos themselves are never probes."""
    enrolled_paths = set(gallery.enrolled.values())
    probes: list[tuple[Path, str | None]] = [
        (path, identity if identity in gallery.enrolled else None)
        for path, identity in photos.items() if str(path) not in enrolled_paths
    ]
    if distractors_dir is not None:
        probes += [(path, None) for path in photos_by_folder(distractors_dir) if str(path) not in enrolled_paths]
    return probes


def _search_all(gate: Gate, gallery: Gallery, probes: list[tuple[Path, str | None]], threads: int) -> list[Search]:
    searches = []
    with progress_bar() as progress, ThreadPoolExecutor(threads) as pool:
        task = progress.add_task("searching probes", total=len(probes))
        for search in pool.map(lambda probe: _search(gate, gallery, *probe), probes):
            searches.append(search)
            progress.advance(task)
    return searches


def _search(gate: Gate, gallery: Gallery, path: Path, identity: str | None) -> Search:
    try:
        response = _call(gate, "SearchFacesByImage", {
            "CollectionId": COLLECTION, "Image": {"Bytes": path.read_bytes()},
            "MaxFaces": CANDIDATES, "FaceMatchThreshold": 0.0,
        })
    except RekognitionError as exc:
        return Search(str(path), identity is not None, 0, 0.0, 0.0, exc.code)
    matches = response["FaceMatches"]
    top = matches[0]["Similarity"] if matches else 0.0
    for rank, match in enumerate(matches, 1):
        if identity is not None and gallery.face_identity.get(match["Face"]["FaceId"]) == identity:
            return Search(str(path), True, rank, match["Similarity"], top, None)
    return Search(str(path), identity is not None, 0, 0.0, top, None)
