"""Run facegate on a free localhost port: an ASGI app in a background thread, or
``facegate serve`` as a child process.

Benchmarks and tests measure the real HTTP path (uvicorn, SigV4, JSON). The thread is
cheapest; the child process is what an operator runs (``--workers``, ``kill -9``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """Serve ``app``; yields its endpoint URL and stops the server on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


FACEGATE = str(Path(sys.executable).parent / "facegate")
"""The ``facegate`` command of the running interpreter's environment."""


def start_serve_process(data_dir: Path, port: int, workers: int = 1, timeout: float = 120,
                        options: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``facegate serve`` (with ``options``) as a child process, returned once every worker has
    started and ``/health`` answers. Its output is appended to ``serve.log`` in the data directory."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "serve.log"
    with log_path.open("ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            [FACEGATE, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers), *options],
            stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if _started_workers(log_path, log_start) >= workers:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                return process
            except OSError:
                pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"facegate serve did not come up on port {port}; see {log_path}")


def _started_workers(log_path: Path, offset: int) -> int:
    """How many server processes have logged uvicorn's start-up line since ``offset``."""
    with log_path.open("rb") as log:
        log.seek(offset)
        return log.read().count(b"Application startup complete.")


def worker_pids(parent_pid: int) -> list[int]:
    """The child processes of ``parent_pid`` (Linux ``/proc``), i.e. a serve's workers."""
    children: list[int] = []
    for task in Path(f"/proc/{parent_pid}/task").glob("*/children"):
        children += [int(pid) for pid in task.read_text().split()]
    return sorted(children)


def has_exited(pid: int) -> bool:
    """True once ``pid`` is gone or a zombie (dead, but not yet reaped by its new parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
