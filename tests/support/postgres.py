"""A real, throwaway PostgreSQL server for the tests that run facegate on PostgreSQL.

``FACEGATE_TEST_POSTGRES_URL`` points the tests at an existing server instead. Otherwise
the Debian server binaries (``/usr/lib/postgresql/*/bin``) start a private cluster in a
temporary directory on a free port, as the ``postgres`` user when the tests run as root
(initdb refuses root). Each test gets its own database.
"""

from __future__ import annotations

import getpass
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facegate.bench.local_server import free_port

TEST_URL_VARIABLE = "FACEGATE_TEST_POSTGRES_URL"


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable_reason() -> str | None:
    """Why no PostgreSQL server can be had for the tests, or None when one can."""
    if os.environ.get(TEST_URL_VARIABLE) or server_binaries() is not None:
        return None
    return f"no PostgreSQL server binaries found; set {TEST_URL_VARIABLE} to use a running server"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of a server's maintenance database."""
    if os.environ.get(TEST_URL_VARIABLE):
        yield os.environ[TEST_URL_VARIABLE]
        return
    binaries = server_binaries()
    assert binaries is not None, unavailable_reason()
    as_user = ["runuser", "-u", "postgres", "--"] if getpass.getuser() == "root" else []
    root = Path(tempfile.mkdtemp(prefix="facegate-pg-"))
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", free_port()
    try:
        subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
                       check=True, capture_output=True)
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
                       check=True, capture_output=True)
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"facegate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                         dbname=url.database, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
