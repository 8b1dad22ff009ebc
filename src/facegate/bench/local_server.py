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


def start_serve_process(data_dir: Path, port: int, workers: int = 1, timeout: float = 120) -> subprocess.Popen[bytes]:
    """``facegate serve`` as a child process, returned once ``/health`` answers."""
    process = subprocess.Popen(
        [FACEGATE, "serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"facegate serve did not come up on port {port}")
