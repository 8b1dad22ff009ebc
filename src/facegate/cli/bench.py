"""``facegate bench``: performance measured, with the baseline in the same run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

_DEFAULT_FACES = os.environ.get("FACEGATE_TEST_FACES", "../shared/faces")


@click.group()
def bench() -> None:
    """Run benchmarks and write JSON results."""


@bench.command("engine")
@click.option("--faces", "faces_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=_DEFAULT_FACES, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"), show_default=True)
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
@click.option("--faces", "faces_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=_DEFAULT_FACES, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmarks/results"), show_default=True)
def server(faces_dir: Path, out_dir: Path) -> None:
    """SearchFacesByImage latency at 10k/100k faces and IndexFaces throughput; writes server.json.

    \b
    Example:
      facegate bench server --faces ../shared/faces
    """
    from facegate.bench.server_bench import run_server_bench

    _write(out_dir / "server.json", run_server_bench(faces_dir))
