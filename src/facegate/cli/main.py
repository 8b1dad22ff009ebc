"""The ``facegate`` command: the single front door."""

import click

from facegate.cli.bench import bench
from facegate.cli.console import console_user, review_group
from facegate.cli.evaluate import evaluate
from facegate.cli.governance import audit_group, consent, orgs, policy, retention
from facegate.cli.images import compare, detect
from facegate.cli.server import keys, serve


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
cli.add_command(evaluate)
cli.add_command(bench)
for group in (orgs, policy, audit_group, consent, retention, console_user, review_group):
    cli.add_command(group)


def main() -> None:
    cli()
