"""Turn many photo files into descriptors, on every core, with a progress bar.

Evaluation must run through the engine users get, so this only orchestrates: one engine
per worker process (models load once each), BLAS pinned to one thread per worker so the
workers don't fight over cores. Photos where no face is found are returned with
``descriptor=None`` and counted, never dropped silently.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from facegate.engine.errors import ImageRejected
from facegate.engine.image import decode_image
from facegate.engine.face_models import DEFAULT_FACE_MODEL, load_engine

T = TypeVar("T")


@dataclass(frozen=True)
class PhotoDescription:
    """One photo's outcome: ``descriptor`` is None when no face was found or the image was rejected."""

    path: str
    descriptor: np.ndarray | None
    faces_found: int
    error: str | None = None


def choose_face_index(boxes: Sequence[tuple[float, float, float, float]], width: int, height: int, policy: str) -> int:
    """Which detected face a photo is "of". ``largest`` is what CompareFaces and
    SearchFacesByImage use; ``center`` is the LFW convention (the named person is centred)."""
    if policy == "largest":
        return max(range(len(boxes)), key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    cx, cy = width / 2, height / 2
    return min(
        range(len(boxes)),
        key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - cx) ** 2 + ((boxes[i][1] + boxes[i][3]) / 2 - cy) ** 2,
    )


def describe_one(path: str, model: str, policy: str) -> PhotoDescription:
    """Decode, detect and embed one photo file through face model ``model``'s engine."""
    engine = load_engine(model)
    try:
        image = decode_image(Path(path).read_bytes())
    except ImageRejected as exc:
        return PhotoDescription(path, None, 0, f"{type(exc).__name__}: {exc}")
    faces = engine.detect(image, details=False)
    if not faces:
        return PhotoDescription(path, None, 0)
    boxes = [(f.detection.box.left, f.detection.box.top, f.detection.box.right, f.detection.box.bottom) for f in faces]
    chosen = faces[choose_face_index(boxes, image.width, image.height, policy)]
    return PhotoDescription(path, engine.embed(image, [chosen])[0], len(faces))


def describe_photos(
    paths: Sequence[str],
    model: str = DEFAULT_FACE_MODEL,
    policy: str = "largest",
    workers: int | None = None,
    label: str = "describing photos",
    show_progress: bool | None = None,
) -> list[PhotoDescription]:
    """Descriptions in the order of ``paths``, computed on ``workers`` processes (default:
    all cores). ``model`` defaults to the one ``facegate serve`` uses, so evaluations
    describe the product."""
    work = functools.partial(describe_one, model=model, policy=policy)
    return map_photos(work, paths, workers, label, show_progress)


def map_photos(
    work: Callable[[str], T],
    paths: Sequence[str],
    workers: int | None = None,
    label: str = "photos",
    show_progress: bool | None = None,
) -> list[T]:
    """``[work(p) for p in paths]`` on several processes, in order, with a progress bar on a terminal.

    ``work`` must be picklable (a module-level function or a partial of one).
    """
    workers = workers or os.cpu_count() or 1
    chunks = [list(paths[i : i + _CHUNK]) for i in range(0, len(paths), _CHUNK)]
    results: list[T] = []
    with progress_bar(show_progress) as progress:
        task = progress.add_task(label, total=len(paths))
        for batch in _map_chunks(work, chunks, workers):
            results.extend(batch)
            progress.advance(task, len(batch))
    return results


_CHUNK = 16


def _run_chunk(work: Callable[[str], T], chunk: list[str]) -> list[T]:
    return [work(p) for p in chunk]


def _map_chunks(work: Callable[[str], T], chunks: list[list[str]], workers: int) -> Iterator[list[T]]:
    if workers <= 1:
        yield from (_run_chunk(work, c) for c in chunks)
        return
    # Workers share the cores, so each gets one BLAS thread. The variable must be set
    # before numpy loads in the child, hence spawn (not fork) and the environment.
    context = multiprocessing.get_context("spawn")
    env_before = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            yield from pool.map(functools.partial(_run_chunk, work), chunks)
    finally:
        if env_before is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = env_before


def progress_bar(show: bool | None = None) -> Progress:
    """A rich progress bar that only draws on a terminal (stderr), so piped --json stays clean."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not (show if show is not None else os.isatty(2)),
    )


def count_faces(path: str, model: str = DEFAULT_FACE_MODEL) -> int:
    """How many faces the engine detects in one photo file (0 when the image is rejected)."""
    try:
        image = decode_image(Path(path).read_bytes())
    except ImageRejected:
        return 0
    return len(load_engine(model).detect(image, details=False))
