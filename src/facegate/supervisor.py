"""``facegate serve --workers N``: one listening socket, N worker processes, a parent that
only watches them.

uvicorn's own supervisor pings each worker and kills one that does not answer within 5 s;
a worker whose GIL is held by detection and embedding cannot answer, so busy workers were
killed with requests in flight, and a ``kill -9`` of that supervisor left its workers
holding the port. Here the parent binds the port once and starts N fresh interpreters that
serve on the inherited socket (the kernel hands each connection to whichever worker
accepts first, so an idle worker takes it). A worker is restarted only when it *exits*.
SIGTERM or SIGINT to the parent is passed on as SIGTERM, and each worker finishes its
in-flight requests before it exits. Each worker asks the kernel for SIGTERM when the parent
dies (Linux ``PR_SET_PDEATHSIG``; elsewhere a thread polls the parent's pid), so no worker
outlives its parent.

The parent loads neither the models nor the face index; each worker opens the data directory
itself (``$FACEGATE_DATABASE_URL`` reaches it through the environment), and worker 0 also
runs the retention sweeper, so the sweep runs exactly once per server, in a process that holds
a store (a restarted worker 0 sweeps again at start-up, which is harmless: a sweep only
deletes what is already due).
"""

from __future__ import annotations

import ctypes
import logging
import logging.config
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

GRACEFUL_SHUTDOWN_SECONDS = 10
"""How long a stopping worker lets in-flight requests run before it closes their connections."""

KEEP_ALIVE_SECONDS = 75
"""How long an idle client connection stays open. uvicorn's default of 5 s races with
clients that reuse connections (botocore keeps them pooled without limit): a worker that
was busy or paused for longer closes, on waking, connections a client had just sent a
request on, and the client sees "connection closed" with no answer. 75 s also outlasts the
60 s idle timeout of common load balancers in front, as they expect of their backends."""

ACCESS_LOG_VARIABLE = "FACEGATE_ACCESS_LOG"
"""Set to 1 by ``serve --access-log`` (workers inherit it): uvicorn then logs a line per request."""


def uvicorn_settings() -> dict[str, Any]:
    """How every serving process runs uvicorn. httptools parses HTTP in C and uvloop runs the
    event loop: against h11 and asyncio's loop they took SearchFaces at 1M faces from 9.6 to
    8.6 ms at p50 over the wire (measured 2026-11-28). The access log is off unless asked for:
    every request already has its audit record, and the line per request cost about 0.5 ms of
    the event loop's time."""
    return {"log_level": "info", "http": "httptools", "loop": "uvloop",
            "access_log": os.environ.get(ACCESS_LOG_VARIABLE) == "1",
            "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS, "timeout_keep_alive": KEEP_ALIVE_SECONDS}


_POLL_SECONDS = 0.2
"""How often the parent checks for exited workers and for a stop signal."""

_QUICK_EXIT_SECONDS = 10.0
"""A worker that exits sooner than this after starting is restarted after a growing pause
(1, 2, 4 ... up to 30 s), so a worker that cannot start (no models, no database) does not
spin; one that ran longer is restarted at once."""

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

BLAS_THREADS_VARIABLE = "OPENBLAS_NUM_THREADS"
"""numpy's OpenBLAS reads this once, when numpy is first imported."""


def one_blas_thread(environment: MutableMapping[str, str]) -> None:
    """One OpenBLAS thread per server process, unless the operator set a number.

    A server's matrix products are small (one probe against a collection) and run on many
    request threads at once; OpenBLAS's default of one thread per core makes each of them
    contend for every core with the others and with detection. Measured on 2 busy cores
    (issue 11): SearchFacesByImage p99 about 800 ms with 2 threads, about 300 ms with 1.
    """
    environment.setdefault(BLAS_THREADS_VARIABLE, "1")

log = logging.getLogger("uvicorn.error")  # the parent's lines read like its workers' uvicorn lines


@dataclass
class _Slot:
    """One of the N worker positions; slot 0 runs the retention sweeper."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    restart_at: float = 0.0


class Supervisor:
    """Starts ``workers`` processes on ``listener`` and keeps that many running until stopped."""

    def __init__(self, listener: socket.socket, workers: int, data_dir: Path, sweep_seconds: float) -> None:
        self._listener = listener
        self._slots = [_Slot(n) for n in range(workers)]
        self._data_dir = data_dir
        self._sweep_seconds = sweep_seconds
        self._stopping = False
        self._environment = dict(os.environ)
        one_blas_thread(self._environment)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT, then stop the workers gracefully; returns the exit code."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)
        for slot in self._slots:
            self._start(slot)
        while not self._stopping:
            for slot in self._slots:
                self._tend(slot)
            time.sleep(_POLL_SECONDS)
        self._shut_down()
        return 0

    def _stop(self, sig: int, _frame: object) -> None:
        log.info("Received %s; stopping the workers", signal.Signals(sig).name)
        self._stopping = True

    def _start(self, slot: _Slot) -> None:
        fd = self._listener.fileno()
        sweep = self._sweep_seconds if slot.number == 0 else 0
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "facegate.supervisor", str(fd), str(os.getpid()), str(self._data_dir), str(sweep)],
            pass_fds=(fd,), env=self._environment,
        )
        slot.started_at = time.monotonic()
        log.info("Started worker %d [%d]", slot.number, slot.process.pid)

    def _tend(self, slot: _Slot) -> None:
        """Restart the slot's worker if it has exited (and its pause, if any, is over)."""
        if slot.process is not None:
            code = slot.process.poll()
            if code is None:
                return
            lived = time.monotonic() - slot.started_at
            slot.quick_exits = slot.quick_exits + 1 if lived < _QUICK_EXIT_SECONDS else 0
            pause = min(30.0, 2.0 ** (slot.quick_exits - 1)) if slot.quick_exits else 0.0
            log.warning("Worker %d [%d] exited with code %d after %.1f s; restarting in %.0f s",
                        slot.number, slot.process.pid, code, lived, pause)
            slot.process, slot.restart_at = None, time.monotonic() + pause
        if time.monotonic() >= slot.restart_at:
            self._start(slot)

    def _shut_down(self) -> None:
        running = [s.process for s in self._slots if s.process is not None and s.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        self._listener.close()
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN_SECONDS + 5
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("Worker [%d] did not stop in time; killing it", process.pid)
                process.kill()
                process.wait()


def serve_workers(data_dir: Path, host: str, port: int, workers: int, sweep_seconds: float) -> int:
    """Bind HOST:PORT, run ``workers`` worker processes on it until stopped; the exit code.

    Raises OSError if the port cannot be bound (e.g. another server holds it).
    """
    from uvicorn.config import LOGGING_CONFIG

    logging.config.dictConfig(LOGGING_CONFIG)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Listening at once: connections queue, rather than being refused, while workers (re)start.
    listener = socket.create_server((host, port), family=family, backlog=2048)
    log.info("Listening on %s:%d with %d worker processes (Press CTRL+C to quit)", host, port, workers)
    return Supervisor(listener, workers, data_dir, sweep_seconds).run()


def _exit_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when ``parent_pid`` dies (SIGTERM, not
    SIGKILL, so in-flight requests still finish and their clients get their answers).

    The check after the request closes the race of a parent that died before it was made.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
    except (OSError, AttributeError):
        prctl = None
    if prctl is None or prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        threading.Thread(target=_watch_parent, args=(parent_pid,), name="facegate-parent-watch", daemon=True).start()
    if os.getppid() != parent_pid:
        sys.exit("facegate worker: the serve process exited before this worker started")


def _watch_parent(parent_pid: int) -> None:
    """Where the kernel cannot be asked: notice within a second that we were re-parented."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _closing_connections_once(stopping: Callable[[], bool], app: ASGIApp) -> ASGIApp:
    """``app``, answering with ``Connection: close`` once ``stopping()``.

    When uvicorn begins a graceful shutdown it tells the connections it knows of to close
    after their current response, but one accepted in that same moment is missed: it stays
    open, a client that keeps sending on it keeps the worker from stopping, and the graceful
    timeout then cancels its request with a 500 (seen in the SIGKILL suite). Closing each
    connection after its next response sends such a client to another worker instead.
    """

    async def closing(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and stopping():
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await app(scope, receive, send_closing if scope["type"] == "http" else send)

    return closing


def _run_worker(fd: int, parent_pid: int, data_dir: Path, sweep_seconds: float) -> None:
    """One worker: build the app, then serve on the inherited listening socket until SIGTERM."""
    _exit_with_parent(parent_pid)
    import uvicorn

    from facegate.governance.retention import start_sweeper
    from facegate.server import Facegate

    instance = Facegate.open(data_dir)
    stop_sweeper = start_sweeper(instance.store, sweep_seconds) if sweep_seconds > 0 else None
    # The check runs per response, so only once the server below exists and serves.
    app = _closing_connections_once(lambda: server.should_exit, instance.app())
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_settings()))
    try:
        server.run(sockets=[socket.socket(fileno=fd)])
    finally:
        if stop_sweeper is not None:
            stop_sweeper.set()


if __name__ == "__main__":
    # Arguments, as Supervisor._start passes them: listening fd, parent pid, data directory,
    # retention sweep interval in seconds (0: this worker does not sweep).
    _run_worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))
