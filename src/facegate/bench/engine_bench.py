"""Engine throughput of every face model against the peer pipeline, on the same photos
in the same run.

The pipelines do the same job per photo: decode, detect, landmark, describe. The
baseline is measured twice, as its README uses it (one process) and on both cores (two
processes), so the reported ratios separate "faster per core" from "uses more cores".
facegate is measured three times: on all cores, in one process (which spreads SFace's chips
over every core it may use), and in one process held to one core (``_one_core_rate``), the
figure the per-core ratio compares.
Accuracy on the LFW development pairs is measured for both, so speed is never bought
with accuracy unnoticed.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from facegate.bench.peer import peer_describe
from facegate.engine.face_models import DEFAULT_FACE_MODEL, FACE_MODEL_FAMILIES, load_engine
from facegate.evaluate.describe import describe_photos, map_photos
from facegate.evaluate.lfw_pairs import read_pairs
from facegate.evaluate.stats import kfold_accuracy


def _one_core_rate(sample: list[str], name: str) -> float:
    """Images per second of ``name`` in a process born on one core. Pinning a running process
    would leave its thread pools (OpenBLAS's, the engine's chip pool) sized for every core and
    spinning against each other on one; a child started from a pinned thread inherits the one
    core and sizes them to it."""
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as child:
            seconds = child.submit(_describe_seconds, sample, name).result()
    finally:
        os.sched_setaffinity(0, cores)
    return len(sample) / seconds


def _describe_seconds(sample: list[str], name: str) -> float:
    load_engine(name)
    return _timed(lambda: describe_photos(sample, name, policy="center", workers=1, show_progress=False))[1]


def _timed(run: Callable[[], list[Any]]) -> tuple[list[Any], float]:
    start = time.perf_counter()
    out = run()
    return out, time.perf_counter() - start


def _lfw_accuracy(descriptors: dict[str, np.ndarray | None], pairs: Sequence[Any]) -> float:
    """k-fold accuracy from raw distances (a missing face scores as the worst distance)."""
    scores = []
    for pair in pairs:
        a, b = descriptors[pair.path_a], descriptors[pair.path_b]
        scores.append(-9.0 if a is None or b is None else -float(np.linalg.norm(a - b)))
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    return float(kfold_accuracy(np.array(scores), same, folds)[0])


def run_engine_bench(faces_dir: Path, single_process_sample: int = 300, seed: int = 0) -> dict[str, Any]:
    """Images per second for each face model (all cores and one process) and for the peer
    (1 and all processes), with ratios of each model against the peer."""
    lfw = faces_dir / "lfw_erstrong"
    pairs = read_pairs(lfw / "_labels" / "pairs.txt")
    photos = sorted({p for pair in pairs for p in (pair.path_a, pair.path_b)})
    paths = [str(lfw / p) for p in photos]
    cores = os.cpu_count() or 1
    sample = random.Random(seed).sample(paths, min(single_process_sample, len(paths)))

    peer, peer_seconds = _timed(lambda: map_photos(peer_describe, paths, workers=cores, label="peer, all cores"))
    _, peer_single_seconds = _timed(lambda: map_photos(peer_describe, sample, workers=1, label="peer, 1 process"))
    peer_rate = len(paths) / peer_seconds
    peer_readme_rate = len(sample) / peer_single_seconds
    models = {}
    for name in FACE_MODEL_FAMILIES:  # a -fsn model runs its family's networks
        load_engine(name)
        ours, ours_seconds = _timed(
            lambda: describe_photos(paths, name, policy="center", workers=cores, label=f"facegate {name}")
        )
        _, ours_single_seconds = _timed(
            lambda: describe_photos(sample, name, policy="center", workers=1, label=f"facegate {name}, 1 process")
        )
        ours_core_rate = _one_core_rate(sample, name)
        ours_rate, ours_single_rate = len(paths) / ours_seconds, len(sample) / ours_single_seconds
        models[name] = {
            "model_version": load_engine(name).model_version,
            "images_per_second_all_cores": ours_rate,
            "images_per_second_one_process": ours_single_rate,
            "images_per_second_one_core": ours_core_rate,
            "lfw_accuracy": _lfw_accuracy({p: d.descriptor for p, d in zip(photos, ours)}, pairs),
            "photos_without_face": sum(d.descriptor is None for d in ours),
            "ratio_vs_peer_as_readme": ours_rate / peer_readme_rate,
            "ratio_vs_peer_same_cores": ours_rate / peer_rate,
            "ratio_per_core": ours_core_rate / peer_readme_rate,
        }
    return {
        "photos": len(paths),
        "dataset": "LFW development pairs (folds 1-4), every photo they name",
        "cores": cores,
        "machine": platform.processor() or platform.machine(),
        "default_face_model": DEFAULT_FACE_MODEL,
        "face_models": models,
        "peer": {
            "pipeline": "face_recognition.face_encodings(load_image_file(path)): HOG upsample 1, model='small', 1 jitter",
            "images_per_second_one_process_as_readme": peer_readme_rate,
            "images_per_second_all_cores": peer_rate,
            "lfw_accuracy": _lfw_accuracy(dict(zip(photos, peer)), pairs),
            "photos_without_face": sum(d is None for d in peer),
        },
        "single_process_sample": len(sample),
    }
