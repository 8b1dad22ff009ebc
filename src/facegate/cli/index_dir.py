"""``facegate index-dir COLLECTION DIR``: bulk enrolment of an archive of photos.

Worker processes (``--jobs``, one engine each, loaded once) decode, detect and embed; this
process writes their results in batches, each batch in one transaction with its audit
record (``governance/bulk_indexing.py``), and only then notes each image's outcome in the
report file. A rerun skips every image the report already holds with the same size and
modification time; an image committed but not yet reported is found again by its bytes'
fingerprint and ExternalImageId, so nothing is indexed twice.
"""

from __future__ import annotations

import concurrent.futures as futures
import functools
import hashlib
import json
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from facegate.cli.data_dir import data_dir_option, existing_data_dir
from facegate.engine.face_models import configured_face_model, load_engine
from facegate.governance.bulk_indexing import DENIED, INDEXED, NO_FACE, UNREADABLE, BulkIndexing, Outcome, UnknownAccessKey, active_identity
from facegate.governance.policy import Policies
from facegate.service.bulk_indexing import (
    MAX_FILE_BYTES, QUALITY_FILTER, QUALITY_FILTERS, AnalysedImage, analyse_image, external_image_id,
)
from facegate.service.context import Service
from facegate.service.exceptions import RekognitionError
from facegate.supervisor import one_blas_thread

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""What IndexFaces accepts (JPEG and PNG); other files in the archive are passed over."""

FINAL = (INDEXED, NO_FACE, UNREADABLE)
"""Outcomes a rerun keeps. ``denied`` is retried: a consent may have been recorded since."""

BATCH_SECONDS = 2.0
"""A batch is written at most this long (seconds) after its first image was analysed, so a
slow archive still commits, and reports, steadily."""

PARENT_POLL_SECONDS = 1.0
"""How often a worker checks that the run it works for is still there."""

IN_FLIGHT_PER_JOB = 4
"""Images queued per worker: enough to keep each busy, few enough that Ctrl-C stops soon."""


@dataclass(frozen=True)
class ImageFile:
    path: Path
    relative: str
    size: int
    mtime_ns: int
    external_id: str


def _image_files(directory: Path, naming: str) -> Iterator[ImageFile]:
    """Every JPEG and PNG under ``directory``, in a stable order (symbolic links to
    directories are not followed, so a loop cannot trap the walk)."""
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            relative = path.relative_to(directory).as_posix()
            stat = path.stat()
            label = {"name": name, "stem": path.stem, "path": relative.replace("/", ":")}[naming]
            yield ImageFile(path, relative, stat.st_size, stat.st_mtime_ns, external_image_id(label))


class Report:
    """The run's JSON-lines report: one line per image, appended after its batch commits."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def finished(self) -> dict[str, dict[str, Any]]:
        """Entries with a final outcome, by relative path (the last line for a path wins).
        A line cut short by a kill is ignored: its image is simply done again."""
        entries: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return entries
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                entries[entry["path"]] = entry
        return {path: entry for path, entry in entries.items() if entry.get("outcome") in FINAL}

    def append(self, entries: list[dict[str, Any]]) -> None:
        """Append and fsync, so a line in the report means its outcome is on disk too."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as out:
            if out.tell() and (out.seek(-1, os.SEEK_END), out.read(1))[1] != b"\n":
                out.write(b"\n")  # finish a line a kill cut short
            out.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries).encode())
            out.flush()
            os.fsync(out.fileno())


def default_report(data_dir: Path, organization: str, collection_id: str, directory: Path) -> Path:
    """In the data directory (the archive may be read-only), one per organisation,
    collection and directory."""
    key = hashlib.sha256(f"{organization}\0{collection_id}\0{directory.resolve()}".encode()).hexdigest()[:16]
    return data_dir / "index-dir" / f"{external_image_id(collection_id)}-{key}.jsonl"


# -- worker processes ----------------------------------------------------------------------

_analyse: Callable[[bytes], AnalysedImage] | None = None
"""In a worker: ``analyse_image`` bound to the collection's engine and the run's QualityFilter."""


def _start_worker(face_model: str, quality_filter: str, parent_pid: int) -> None:
    """Load the collection's engine once per worker. Ctrl-C is the parent's to handle: it
    stops handing out images and sums up; the workers finish their image. A parent killed
    outright (``kill -9``) cannot stop its workers, so each leaves on its own."""
    global _analyse
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="facegate-parent-watch", daemon=True).start()
    _analyse = functools.partial(analyse_image, load_engine(face_model), quality_filter=quality_filter)


def _exit_with_parent(parent_pid: int) -> None:
    """Exit within ``PARENT_POLL_SECONDS`` of being re-parented: the work queue's pipe never
    reports the parent's death, since each worker holds both of its ends."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def _analyse_file(path: str) -> AnalysedImage:
    assert _analyse is not None, "runs in a worker started by _start_worker"
    try:
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            return AnalysedImage("", error=f"ImageTooLargeException: the file is {size} bytes; the limit is {MAX_FILE_BYTES}")
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return AnalysedImage("", error=f"cannot read the file: {exc.strerror or exc}")
    return _analyse(data)


# -- the command -----------------------------------------------------------------------------

class _Rate(ProgressColumn):
    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        return Text(f"{task.completed / elapsed:.1f} images/s" if elapsed > 0 else "", style="progress.data.speed")


@click.command("index-dir")
@click.argument("collection_id", metavar="COLLECTION")
@click.argument("directory", metavar="DIR", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--access-key-id", required=True, help="Act as this access key: its organisation's collection, its purpose, "
              "decided by the policy packs as IndexFaces.")
@click.option("--jobs", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="the number of cores",
              help="Worker processes that detect and embed.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON-lines report of each image's outcome; a rerun skips what it holds. "
                   "Default: <data dir>/index-dir/<COLLECTION>-<hash of organisation, collection and DIR>.jsonl")
@click.option("--external-image-id", "naming", type=click.Choice(["name", "stem", "path"]), default="name", show_default=True,
              help="ExternalImageId from the file name (photo.jpg), its stem (photo), or its path under DIR "
                   "(2019:photo.jpg); characters outside [a-zA-Z0-9_.-:] become _.")
@click.option("--quality-filter", type=click.Choice(QUALITY_FILTERS), default=QUALITY_FILTER, show_default=True,
              help="IndexFaces' QualityFilter: which detected faces are good enough to index.")
@click.option("--batch-size", type=click.IntRange(min=1), default=50, show_default=True,
              help="Images written per transaction (and audit record).")
@click.option("--case-ref", help="A case reference for the audit records (as the X-Facegate-Case-Ref header).")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary record as JSON instead of a table.")
def index_dir(collection_id: str, directory: Path, access_key_id: str, jobs: int, report_path: Path | None, naming: str,
              quality_filter: str, batch_size: int, case_ref: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Index every face in the JPEG and PNG files under DIR (recursively) into COLLECTION,
    as IndexFaces would, in parallel, resumably.

    The run is governed like IndexFaces for the key's organisation and purpose (a denied
    key indexes nothing, and the denial is audited); each batch is audited with its
    FaceIds and ExternalImageIds, and the run ends with a summary record
    (facegate:IndexDirectory). Interrupted (Ctrl-C, kill), run it again: images in the
    report are skipped, and none is indexed twice. Unreadable files and photos without a
    face are reported, not fatal.

    \b
    Example:
      facegate index-dir missing-persons /archive/2019 --access-key-id AKIA... --jobs 2
      facegate index-dir staff ./badges --access-key-id AKIA... --external-image-id stem
      facegate audit show --op facegate:IndexDirectory
    """
    store, data = existing_data_dir(data_dir)
    run_id = str(uuid.uuid4())
    try:
        identity = active_identity(store, access_key_id, run_id)
    except UnknownAccessKey as exc:
        raise click.ClickException(str(exc)) from exc
    service = Service(load_engine(configured_face_model()), store)
    run = BulkIndexing(service, Policies(store, data / "packs"), identity, collection_id, run_id, str(directory.resolve()), case_ref)
    try:
        collection = run.start()
    except RekognitionError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    report = Report(report_path or default_report(data, identity.organization, collection_id, directory))
    error: BaseException | None = None
    interrupted = False
    try:
        _index(run, service.engine_for(collection).name, quality_filter, directory, naming, report, jobs, batch_size)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:  # the summary record says how the run ended; the traceback follows
        error = exc
    record = run.finish(error, interrupted)
    _show(record["summary"], report.path, as_json)
    if isinstance(error, RekognitionError):
        raise click.ClickException(f"{error.code}: {error.message}")
    if error is not None:
        raise error
    if interrupted:
        click.echo("interrupted: run the same command again to finish", err=True)
        raise SystemExit(130)


def _index(run: BulkIndexing, face_model: str, quality_filter: str, directory: Path, naming: str, report: Report,
           jobs: int, batch_size: int) -> None:
    files = list(_image_files(directory, naming))
    finished = report.finished()
    todo = [f for f in files if (e := finished.get(f.relative)) is None or (e.get("size"), e.get("mtime_ns")) != (f.size, f.mtime_ns)]
    run.tally.seen, run.tally.already_done = len(files), len(files) - len(todo)
    if not todo:
        return
    one_blas_thread(os.environ)  # inherited by the workers: one process per core is the parallelism
    pool = futures.ProcessPoolExecutor(min(jobs, len(todo)), multiprocessing.get_context("spawn"),
                                       initializer=_start_worker, initargs=(face_model, quality_filter, os.getpid()))
    columns = (TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), _Rate(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=Console(stderr=True)) as progress:
            bar = progress.add_task("images", total=len(todo))
            queue = iter(todo)
            pending: dict[futures.Future[AnalysedImage], ImageFile] = {}
            analysed: list[tuple[ImageFile, AnalysedImage]] = []
            batch_started = time.monotonic()
            while True:
                while len(pending) < jobs * IN_FLIGHT_PER_JOB and (item := next(queue, None)) is not None:
                    pending[pool.submit(_analyse_file, str(item.path))] = item
                if not pending and not analysed:
                    break
                done, _ = futures.wait(pending, timeout=BATCH_SECONDS, return_when=futures.FIRST_COMPLETED)
                if done and not analysed:
                    batch_started = time.monotonic()
                analysed += [(pending.pop(future), future.result()) for future in done]
                if analysed and (len(analysed) >= batch_size or not pending or time.monotonic() - batch_started >= BATCH_SECONDS):
                    _write(run, report, analysed)
                    progress.advance(bar, len(analysed))
                    analysed = []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write(run: BulkIndexing, report: Report, analysed: list[tuple[ImageFile, AnalysedImage]]) -> None:
    outcomes = run.commit([(item.external_id, image) for item, image in analysed])
    report.append([_entry(item, outcome) for (item, _), outcome in zip(analysed, outcomes)])


def _entry(item: ImageFile, outcome: Outcome) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": item.relative, "size": item.size, "mtime_ns": item.mtime_ns, "outcome": outcome.outcome,
                             "external_image_id": item.external_id}
    if outcome.outcome == INDEXED:
        entry["face_ids"] = list(outcome.face_ids)
    if outcome.unindexed:
        entry["unindexed_faces"] = outcome.unindexed
    if outcome.reason:
        entry["reason"] = outcome.reason
    return entry


def _show(summary: dict[str, Any], report: Path, as_json: bool) -> None:
    analysed = summary["indexed"] + summary["no_face"] + summary["unreadable"] + summary["denied"]
    rate = analysed / summary["seconds"] if summary["seconds"] > 0 else 0.0
    if as_json:
        click.echo(json.dumps({**summary, "images_per_s": round(rate, 2), "report": str(report)}))
        return
    table = Table(title=f"index-dir: {summary['images_seen']} image file(s) in {summary['directory']}")
    table.add_column("outcome")
    table.add_column("images", justify="right")
    for label, key in (("indexed", INDEXED), ("no face", NO_FACE), ("unreadable", UNREADABLE), ("denied", DENIED),
                       ("done by an earlier run", "already_done")):
        table.add_row(label, str(summary[key]))
    table.add_section()
    table.add_row("faces indexed", str(summary["faces_indexed"]))
    table.add_row("seconds", f"{summary['seconds']:.1f}")
    table.add_row("images/s", f"{rate:.1f}")
    Console().print(table)
    click.echo(f"report: {report}")
