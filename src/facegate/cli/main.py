"""The ``facegate`` command: the single front door."""

import os
import sys

from facegate.supervisor import one_blas_thread

if sys.argv[1:2] == ["serve"]:
    # Before the imports below load numpy: OpenBLAS sizes its thread pool once, at load.
    # ``serve --workers N`` passes the same setting on to each worker (supervisor.py).
    one_blas_thread(os.environ)

import click  # noqa: E402

from facegate.cli.bench import bench  # noqa: E402
from facegate.cli.console import console_user, review_group  # noqa: E402
from facegate.cli.evaluate import evaluate  # noqa: E402
from facegate.cli.governance import audit_group, consent, orgs, policy, retention  # noqa: E402
from facegate.cli.images import compare, detect  # noqa: E402
from facegate.cli.index_dir import index_dir  # noqa: E402
from facegate.cli.server import keys, serve  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facegate")
def cli() -> None:
    """facegate: self-hosted face recognition with the Rekognition face API.

    Every command has --help with an example.
    """


cli.add_command(serve)
cli.add_command(keys)
cli.add_command(detect)
cli.add_command(compare)
cli.add_command(index_dir)
cli.add_command(evaluate)
cli.add_command(bench)
for group in (orgs, policy, audit_group, consent, retention, console_user, review_group):
    cli.add_command(group)


def main() -> None:
    cli()
