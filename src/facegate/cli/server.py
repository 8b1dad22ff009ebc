"""``facegate serve`` and ``facegate keys``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from facegate.cli.data_dir import data_dir_option, open_data_dir
from facegate.server import default_data_dir

RETENTION_SWEEP_SECONDS = 3600
"""The server sweeps expired faces at start-up and then hourly."""



@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@data_dir_option
def serve(host: str, port: int, data_dir: Path | None) -> None:
    """Serve the Rekognition face API (AWS JSON 1.1 + SigV4) on HOST:PORT.

    On first start this creates the data directory and an access key, and prints them.

    \b
    Example:
      facegate serve --port 8000 --data-dir ./data
      python -c "import boto3; print(boto3.client('rekognition', endpoint_url='http://127.0.0.1:8000',
          region_name='us-east-1').list_collections())"
    """
    import uvicorn

    from facegate.governance.keys import create_access_key
    from facegate.governance.retention import start_sweeper
    from facegate.server import Facegate

    instance = Facegate.open(data_dir or default_data_dir())
    endpoint = f"http://{host}:{port}"
    with instance.store.reader() as tx:
        first_start = tx.count_access_keys() == 0
    click.echo(f"facegate {instance.engine.model_version}")
    click.echo(f"data directory: {instance.data_dir.resolve()}")
    click.echo(f"database:       {instance.store.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"endpoint:       {endpoint}")
    if first_start:
        key = create_access_key(instance.store, instance.secrets, name="initial")
        click.echo("An initial access key was created. The secret is shown only now:")
        click.echo(f"  AWS_ACCESS_KEY_ID={key.access_key_id}")
        click.echo(f"  AWS_SECRET_ACCESS_KEY={key.secret_access_key}")
        click.echo(
            f"  boto3.client('rekognition', endpoint_url='{endpoint}', region_name='us-east-1', "
            f"aws_access_key_id='{key.access_key_id}', aws_secret_access_key='{key.secret_access_key}')"
        )
    stop_sweeper = start_sweeper(instance.store, RETENTION_SWEEP_SECONDS)
    try:
        uvicorn.run(instance.app(), host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
    finally:
        stop_sweeper.set()


@click.group()
def keys() -> None:
    """Create, list and revoke access keys."""


@keys.command("create")
@click.option("--org", default="default", show_default=True, help="The organisation the key belongs to.")
@click.option("--purpose", default="photo_library", show_default=True,
              help="The one declared purpose: missing_children, trafficking_victims, access_control, "
                   "identity_verification, photo_library, criminal_investigation, research, or your own.")
@click.option("--name", default=None, help="A label for the key, e.g. the app that uses it.")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help='Print {"AccessKeyId": ..., "SecretAccessKey": ...}.')
def create(org: str, purpose: str, name: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Create an access key bound to one organisation and one purpose.

    The secret is printed once and stored encrypted.

    \b
    Example:
      facegate keys create --org Polaris --purpose trafficking_victims --name triage --json
    """
    from facegate.governance.identity import IdentityError
    from facegate.governance.keys import create_access_key

    store, box, _ = open_data_dir(data_dir)
    try:
        key = create_access_key(store, box, name or f"{org}-{purpose}", org, purpose)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}))
    else:
        click.echo(f"AccessKeyId:     {key.access_key_id}\nSecretAccessKey: {key.secret_access_key}")


@keys.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def list_keys(data_dir: Path | None, as_json: bool) -> None:
    """List keys (never their secrets)."""
    store, _, _ = open_data_dir(data_dir)
    with store.reader() as tx:
        rows = [
            {"AccessKeyId": k.access_key_id, "Name": k.name, "Organization": k.owner, "Purpose": k.purpose,
             "Revoked": k.revoked_at is not None}
            for k in tx.list_access_keys()
        ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['AccessKeyId']}  {r['Organization']}  {r['Purpose']}  {r['Name']}{'  (revoked)' if r['Revoked'] else ''}")


@keys.command("revoke")
@click.argument("access_key_id")
@data_dir_option
def revoke(access_key_id: str, data_dir: Path | None) -> None:
    """Revoke a key; it stops working at its next request."""
    store, _, _ = open_data_dir(data_dir)
    with store.transaction() as tx:
        if not tx.revoke_access_key(access_key_id):
            raise click.ClickException(f"no active key {access_key_id}")
    click.echo(f"revoked {access_key_id}")
