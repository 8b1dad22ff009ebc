"""The ``--data-dir`` option every stateful command shares, and opening what lives there."""

from __future__ import annotations

from pathlib import Path

import click

from facegate.server import configured_database_url, default_data_dir
from facegate.store.database import Store, open_store
from facegate.store.secrets import SecretBox

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the master key and the SQLite database live (unless $FACEGATE_DATABASE_URL names "
    "another database). Default: $FACEGATE_DATA_DIR, else ./data.",
)


def open_data_dir(data_dir: Path | None) -> tuple[Store, SecretBox, Path]:
    """The store, the secret box and the resolved directory (created if missing)."""
    directory = data_dir or default_data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    return open_store(configured_database_url(directory)), SecretBox.for_data_dir(directory), directory
