"""The ``facegate`` command: the single front door."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="facegate")
def cli() -> None:
    """facegate: self-hosted face recognition with the Rekognition face API."""


def main() -> None:
    cli()
