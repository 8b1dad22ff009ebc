"""``facegate console-user`` (the oversight console's accounts) and ``facegate review``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from facegate.cli.data_dir import creating_data_dir, data_dir_option, existing_data_dir

_ROLES = click.Choice(["auditor", "reviewer", "admin"])


def _password(name: str, from_stdin: bool) -> str:
    """From the first line of stdin (scripts), else asked twice without echo."""
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)


@click.group("console-user")
def console_user() -> None:
    """Accounts of the oversight console at /console (separate from API access keys).

    An auditor reads everything and changes nothing; a reviewer also records human-review
    decisions; an admin also creates and revokes keys, creates organisations and turns
    policy packs on and off. Every change to an account is audited.
    """


@console_user.command("add")
@click.argument("name")
@click.option("--role", type=_ROLES, required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (for scripts).")
@data_dir_option
def add(name: str, role: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Create an account (asks for its password: at least 12 characters).

    \b
    Example:
      facegate console-user add alice --role admin
      printf '%s\\n' "$PASSWORD" | facegate console-user add bob --role auditor --password-stdin
    """
    from facegate.governance.console_accounts import AccountError, add_account

    store, _ = creating_data_dir(data_dir)
    try:
        add_account(store, name, role, _password(name, password_stdin))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created console account {name} ({role}); log in at http://HOST:PORT/console/")


@console_user.command("list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def list_users(data_dir: Path | None, as_json: bool) -> None:
    """List accounts and their roles (never their password hashes)."""
    from facegate.governance.console_accounts import list_accounts

    store, _ = existing_data_dir(data_dir)
    rows = [{"Name": a.name, "Role": a.role,
             "Created": dt.datetime.fromtimestamp(a.created_at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for a in list_accounts(store)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        click.echo("\n".join(f"{r['Name']}\t{r['Role']}\t{r['Created']}" for r in rows))


@console_user.command("remove")
@click.argument("name")
@data_dir_option
def remove(name: str, data_dir: Path | None) -> None:
    """Remove an account; its sessions end at once (audited)."""
    from facegate.governance.console_accounts import AccountError, remove_account

    store, _ = existing_data_dir(data_dir)
    try:
        remove_account(store, name)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"removed console account {name}")


@console_user.command("set-role")
@click.argument("name")
@click.option("--role", type=_ROLES, required=True)
@data_dir_option
def set_role(name: str, role: str, data_dir: Path | None) -> None:
    """Change an account's role; it applies from the account's next request (audited)."""
    from facegate.governance.console_accounts import AccountError
    from facegate.governance.console_accounts import set_role as change_role

    store, _ = existing_data_dir(data_dir)
    try:
        change_role(store, name, role)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} is now {role}")


@console_user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (for scripts).")
@data_dir_option
def passwd(name: str, password_stdin: bool, data_dir: Path | None) -> None:
    """Set a new password; the account's sessions end (audited, never the password)."""
    from facegate.governance.console_accounts import AccountError, set_password

    store, _ = existing_data_dir(data_dir)
    try:
        set_password(store, name, _password(name, password_stdin))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password of {name} changed")


@click.group("review")
def review_group() -> None:
    """Human review of identifications made for sensitive purposes (see /console/review)."""


@review_group.command("purposes")
@click.option("--set", "purposes", help="Comma-separated purposes whose identifications enter review from now on.")
@data_dir_option
def purposes(purposes: str | None, data_dir: Path | None) -> None:
    """Show, or set (audited), the purposes whose identifications a person must review.

    \b
    Example:
      facegate review purposes
      facegate review purposes --set criminal_investigation,missing_children,trafficking_victims,identity_verification
    """
    from facegate.governance.review import ReviewError, review_purposes, set_review_purposes

    store, _ = existing_data_dir(data_dir)
    if purposes is not None:
        try:
            set_review_purposes(store, [p.strip() for p in purposes.split(",") if p.strip()])
        except ReviewError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(",".join(sorted(review_purposes(store))))
