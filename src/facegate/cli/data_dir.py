"""The ``--data-dir`` option every stateful command shares, and opening what lives there.

Only ``facegate serve`` and the commands whose job is to create (``keys create``, ``orgs
create``) may make a data directory. Every other command opens an existing one, and where
there is none it fails naming the path it looked in: run from the wrong folder, it must
not answer for a brand-new, empty database as if it were the server's.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from facegate.server import DATA_DIR_VARIABLE, DATABASE_URL_VARIABLE, configured_database_url, default_data_dir
from facegate.store.database import DatabaseNotFound, DatabaseUnreachable, Store, open_store
from facegate.store.secrets import MASTER_KEY_FILE, SecretBox

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the master key and the SQLite database live (unless $FACEGATE_DATABASE_URL names "
    "another database). Default: $FACEGATE_DATA_DIR, else ./data. Only serve, keys create and orgs "
    "create make one; every other command needs it to exist.",
)


def _resolved(data_dir: Path | None) -> tuple[Path, str]:
    """The directory and how it was chosen, for messages."""
    if data_dir is not None:
        how = "--data-dir"
    elif DATA_DIR_VARIABLE in os.environ:
        how = f"${DATA_DIR_VARIABLE}"
    else:
        how = f"the default ./data in {Path.cwd()}"
    return (data_dir or default_data_dir()).absolute(), how


def _not_found(directory: Path, how: str, detail: str) -> click.ClickException:
    return click.ClickException(
        f"no facegate data at {directory} ({how}): {detail}.\n"
        f"Point at the server's data directory with --data-dir DIR or {DATA_DIR_VARIABLE}=DIR, and "
        f"{DATABASE_URL_VARIABLE}=URL if it keeps its database elsewhere (PostgreSQL). "
        "`facegate serve` creates a data directory on first start."
    )


def existing_data_dir(data_dir: Path | None) -> tuple[Store, Path]:
    """The store and directory of an existing data directory; creates nothing. Like every
    CLI command's store, its face index is built only if the command searches: listing keys
    or verifying the audit of a million-face database must not load a million faces."""
    directory, how = _resolved(data_dir)
    if not directory.is_dir():
        raise _not_found(directory, how, "the directory does not exist")
    try:
        return open_store(configured_database_url(directory), create=False, load_index=False), directory
    except DatabaseNotFound as exc:
        raise _not_found(directory, how, str(exc)) from exc


def creating_data_dir(data_dir: Path | None) -> tuple[Store, Path]:
    """The store and directory, created if missing, and said so on stderr: for the commands
    that create (a key or organisation made in the wrong folder is then noticed at once)."""
    directory, how = _resolved(data_dir)
    url = configured_database_url(directory)
    try:
        return open_store(url, create=False, load_index=False), directory
    except DatabaseUnreachable as exc:
        raise _not_found(directory, how, str(exc)) from exc
    except DatabaseNotFound:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    store = open_store(url, load_index=False)
    click.echo(f"facegate: there was no database for {directory} ({how}); created a new one. "
               "If your server uses another data directory, pass --data-dir.", err=True)
    return store, directory


def secret_box(store: Store, directory: Path) -> SecretBox:
    """The master key that encrypts access-key secrets. It is created only for a database
    that holds no keys yet: keys encrypted under a new key beside existing ones (a second
    host without the server's master.key) would never verify."""
    if not (directory / MASTER_KEY_FILE).is_file():
        with store.reader() as tx:
            if tx.count_access_keys():
                raise click.ClickException(
                    f"{directory} has no {MASTER_KEY_FILE}, but its database already holds access keys: "
                    f"copy the server's {MASTER_KEY_FILE} there first."
                )
    return SecretBox.for_data_dir(directory)


def open_data_dir(data_dir: Path | None, load_index: bool = True) -> tuple[Store, SecretBox, Path]:
    """For ``serve``: the store, the secret box and the resolved directory, each created if
    missing. ``load_index=False``: the face index is built only if used (see ``Store``)."""
    directory = data_dir or default_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return open_store(configured_database_url(directory), load_index=load_index), SecretBox.for_data_dir(directory), directory
