"""``facegate serve`` and ``facegate keys``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from facegate.cli.data_dir import creating_data_dir, data_dir_option, existing_data_dir, open_data_dir, secret_box
from facegate.engine.face_models import DEFAULT_FACE_MODEL, FACE_MODEL_VARIABLE, FACE_MODELS
from facegate.server import default_data_dir
from facegate.store.database import Store
from facegate.store.secrets import SecretBox
from facegate.supervisor import ACCESS_LOG_VARIABLE

RETENTION_SWEEP_SECONDS = 3600
"""The server sweeps expired faces at start-up and then hourly."""



@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@data_dir_option
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(1, 64),
    help="Server processes sharing the port. Each loads the models and its own copy of the index "
         "(the index log keeps them in step); one per core gives the most requests per second. "
         "A worker is restarted only if it exits, never for being busy.",
)
@click.option(
    "--face-model", type=click.Choice(sorted(FACE_MODELS)), default=DEFAULT_FACE_MODEL, show_default=True,
    envvar=FACE_MODEL_VARIABLE, show_envvar=True,
    help="The model for DetectFaces, CompareFaces and new collections. Existing collections keep "
         "the model they were created with. 'dlib' uses a landmark model licensed for non-commercial use only.",
)
@click.option(
    "--access-log/--no-access-log", default=False, show_default=True,
    help="Log a line per HTTP request to stderr. Every request is in the audit log either way "
         "(facegate audit show); the line costs about 0.5 ms a request.",
)
def serve(host: str, port: int, data_dir: Path | None, workers: int, face_model: str, access_log: bool) -> None:
    """Serve the Rekognition face API (AWS JSON 1.1 + SigV4) on HOST:PORT.

    On first start this creates the data directory and an access key, and prints them.
    SIGTERM or Ctrl-C stops it gracefully: requests in flight are answered first.

    \b
    Examples:
      facegate serve --port 8000 --data-dir ./data
      facegate serve --workers 2          # one process per core
      python -c "import boto3; print(boto3.client('rekognition', endpoint_url='http://127.0.0.1:8000',
          region_name='us-east-1').list_collections())"
    """
    directory = (data_dir or default_data_dir()).resolve()
    os.environ[FACE_MODEL_VARIABLE] = face_model  # worker processes inherit the choices
    os.environ[ACCESS_LOG_VARIABLE] = "1" if access_log else "0"
    endpoint = f"http://{host}:{port}"
    if workers == 1:
        _serve_in_process(directory, host, port, endpoint)
        return
    # The supervising process holds no models and no index: it opens the store only to
    # migrate it (once, before workers race to) and to create the first key, then closes it.
    from facegate.supervisor import serve_workers

    store, secrets, _ = open_data_dir(directory, load_index=False)
    try:
        _announce(f"{workers} worker processes", directory, store, endpoint)
        _create_first_key(store, secrets, endpoint)
    finally:
        store.close()
    try:
        code = serve_workers(directory, host, port, workers, RETENTION_SWEEP_SECONDS)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from exc
    raise SystemExit(code)


def _serve_in_process(directory: Path, host: str, port: int, endpoint: str) -> None:
    """One process: the app, the retention sweeper and uvicorn share it."""
    import uvicorn

    from facegate.governance.retention import start_sweeper
    from facegate.server import Facegate
    from facegate.supervisor import uvicorn_settings

    instance = Facegate.open(directory)
    _announce(instance.engine.model_version, directory, instance.store, endpoint)
    _create_first_key(instance.store, instance.secrets, endpoint)
    stop_sweeper = start_sweeper(instance.store, RETENTION_SWEEP_SECONDS)
    try:
        uvicorn.run(instance.app(), host=host, port=port, **uvicorn_settings())
    finally:
        stop_sweeper.set()


def _announce(version: str, directory: Path, store: Store, endpoint: str) -> None:
    click.echo(f"facegate {version}")
    click.echo(f"data directory: {directory}")
    click.echo(f"database:       {store.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"endpoint:       {endpoint}")


def _create_first_key(store: Store, secrets: SecretBox, endpoint: str) -> None:
    """On first start, an access key so that `make serve` is immediately usable (audited,
    as made by facegate-serve)."""
    from facegate.governance.keys import create_access_key

    with store.reader() as tx:
        if tx.count_access_keys():
            return
    key = create_access_key(store, secrets, name="initial", actor="facegate-serve")
    click.echo("An initial access key was created. The secret is shown only now:")
    click.echo(f"  AWS_ACCESS_KEY_ID={key.access_key_id}")
    click.echo(f"  AWS_SECRET_ACCESS_KEY={key.secret_access_key}")
    click.echo(
        f"  boto3.client('rekognition', endpoint_url='{endpoint}', region_name='us-east-1', "
        f"aws_access_key_id='{key.access_key_id}', aws_secret_access_key='{key.secret_access_key}')"
    )


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

    The secret is printed once and stored encrypted; the creation is audited (never the
    secret). This creates the data directory if there is none, and says so.

    \b
    Example:
      facegate keys create --org Polaris --purpose trafficking_victims --name triage --json
    """
    from facegate.governance.identity import IdentityError
    from facegate.governance.keys import create_access_key

    store, directory = creating_data_dir(data_dir)
    box = secret_box(store, directory)
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
    store, _ = existing_data_dir(data_dir)
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
    """Revoke a key (audited); it stops working at its next request."""
    from facegate.governance.identity import IdentityError
    from facegate.governance.keys import revoke_access_key

    store, _ = existing_data_dir(data_dir)
    try:
        revoke_access_key(store, access_key_id)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {access_key_id}")
