"""``facegate orgs``, ``policy``, ``audit``, ``consent`` and ``retention``: governing the service."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from facegate.cli.data_dir import creating_data_dir, data_dir_option, existing_data_dir
from facegate.store.transaction import Transaction

_data_dir = data_dir_option


def _date(value: str, what: str) -> float:
    """``YYYY-MM-DD`` (or an ISO time), UTC, as epoch seconds."""
    try:
        return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError as exc:
        raise click.ClickException(f"{what} must be a date like 2027-12-31, got {value!r}") from exc


# -- organisations ---------------------------------------------------------------------------

@click.group()
def orgs() -> None:
    """Organisations: who keys belong to, with a declared sector."""


@orgs.command("create")
@click.argument("name")
@click.option("--sector", required=True, type=click.Choice(["law_enforcement", "government", "ngo", "commercial", "research", "individual"]))
@click.option("--flag", "flags", multiple=True, help="e.g. approved_child_safety (repeatable).")
@_data_dir
@click.option("--json", "as_json", is_flag=True)
def orgs_create(name: str, sector: str, flags: tuple[str, ...], data_dir: Path | None, as_json: bool) -> None:
    """Create an organisation (audited). Creates the data directory if there is none, and says so.

    \b
    Example:
      facegate orgs create "Metro Police" --sector law_enforcement
      facegate orgs create Polaris --sector ngo --flag approved_child_safety
    """
    from facegate.governance.identity import IdentityError, create_organization

    store, _ = creating_data_dir(data_dir)
    try:
        create_organization(store, name, sector, flags)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    out = {"Name": name, "Sector": sector, "Flags": list(flags)}
    click.echo(json.dumps(out) if as_json else f"created {name} ({sector})")


@orgs.command("list")
@_data_dir
@click.option("--json", "as_json", is_flag=True)
def orgs_list(data_dir: Path | None, as_json: bool) -> None:
    """List organisations."""
    store, _ = existing_data_dir(data_dir)
    with store.reader() as tx:
        rows = [{"Name": o.name, "Sector": o.sector, "Flags": list(o.flags)} for o in tx.list_organizations()]
    click.echo(json.dumps(rows, indent=2) if as_json else "\n".join(f"{r['Name']}\t{r['Sector']}\t{','.join(r['Flags'])}" for r in rows))


@orgs.command("s3-buckets")
@click.argument("name")
@click.option("--allow", multiple=True, help="A bucket the organisation may name in S3Object (repeatable); * for every bucket.")
@click.option("--remove", multiple=True, help="A bucket to take off its list (repeatable).")
@_data_dir
@click.option("--json", "as_json", is_flag=True)
def orgs_s3_buckets(name: str, allow: tuple[str, ...], remove: tuple[str, ...], data_dir: Path | None, as_json: bool) -> None:
    """Show or change which S3 buckets an organisation's keys may have facegate read
    (audited). facegate reads S3Object images with its own S3 credentials, so each
    organisation may name only the buckets allowed here; none until you allow some.

    \b
    Example:
      facegate orgs s3-buckets Polaris --allow polaris-photos
      facegate orgs s3-buckets default --allow '*'      # single tenant: every bucket
    """
    from facegate.governance.identity import IdentityError
    from facegate.governance.s3_access import allowed_buckets, set_allowed_buckets

    store, _ = existing_data_dir(data_dir)
    if allow or remove:
        try:
            buckets = set_allowed_buckets(store, name, allow, remove)
        except IdentityError as exc:
            raise click.ClickException(str(exc)) from exc
    else:
        with store.reader() as tx:
            buckets = allowed_buckets(tx, name)
    click.echo(json.dumps({"Name": name, "S3Buckets": buckets}) if as_json else f"{name}: {', '.join(buckets) or '(no bucket)'}")


# -- policy packs ----------------------------------------------------------------------------

@click.group()
def policy() -> None:
    """Policy packs: list, show, enable, disable, and dry-run decisions."""


def _policies(data_dir: Path | None):  # type: ignore[no-untyped-def]
    from facegate.governance.policy import Policies

    store, directory = existing_data_dir(data_dir)
    return Policies(store, directory / "packs"), store


@policy.command("list")
@_data_dir
def policy_list(data_dir: Path | None) -> None:
    """List packs and whether each is on. Your own packs go in <data dir>/packs/*.cedar."""
    policies, _ = _policies(data_dir)
    for pack in policies.packs():
        click.echo(f"{'on ' if pack.enabled else 'off'}  {pack.name}  ({pack.path})")


@policy.command("show")
@click.argument("name")
@_data_dir
def policy_show(name: str, data_dir: Path | None) -> None:
    """Print a pack's Cedar text.

    \b
    Example:
      facegate policy show us-police-moratorium-2020
    """
    policies, _ = _policies(data_dir)
    try:
        click.echo(policies.pack(name).text)
    except KeyError as exc:
        raise click.ClickException(str(exc)) from exc


def _set_pack(name: str, enabled: bool, data_dir: Path | None) -> None:
    from facegate.governance.policy import PolicyError

    policies, _ = _policies(data_dir)
    try:
        policies.set_enabled(name, enabled)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name}: {'on' if enabled else 'off'}")


@policy.command("enable")
@click.argument("name")
@_data_dir
def policy_enable(name: str, data_dir: Path | None) -> None:
    """Turn a pack on (audited). Example: facegate policy enable eu-ai-act-art5"""
    _set_pack(name, True, data_dir)


@policy.command("disable")
@click.argument("name")
@_data_dir
def policy_disable(name: str, data_dir: Path | None) -> None:
    """Turn a pack off (audited). Example: facegate policy disable threshold-floors"""
    _set_pack(name, False, data_dir)


@policy.command("set-moratorium-end")
@click.argument("date")
@_data_dir
def policy_moratorium_end(date: str, data_dir: Path | None) -> None:
    """Set when us-police-moratorium-2020 ends (YYYY-MM-DD), or "none" for until further notice."""
    from facegate.governance.policy import PolicyError, set_moratorium_end

    _, store = _policies(data_dir)
    try:
        set_moratorium_end(store, date)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"moratorium ends: {date}")


@policy.command("test")
@click.option("--key", "key_id", required=True, help="Access key id to decide for.")
@click.option("--op", "operation", required=True, help="Rekognition operation, e.g. SearchFacesByImage.")
@click.option("--collection", help="CollectionId the request would name.")
@click.option("--threshold", type=float, help="FaceMatchThreshold / SimilarityThreshold / UserMatchThreshold.")
@click.option("--case-ref", help="Pretend an X-Facegate-Case-Ref header was sent.")
@_data_dir
def policy_test(key_id: str, operation: str, collection: str | None, threshold: float | None, case_ref: str | None, data_dir: Path | None) -> None:
    """Dry-run a decision and explain it; exits 1 when denied.

    \b
    Example:
      facegate policy test --key AKIA... --op SearchFacesByImage --collection missing --threshold 99
    """
    from facegate.governance.identity import IdentityError, resolve
    from facegate.governance.policy import THRESHOLDS

    policies, store = _policies(data_dir)
    try:
        identity = resolve(store, key_id)
    except IdentityError as exc:
        raise click.ClickException(str(exc)) from exc
    params: dict[str, Any] = {}
    if threshold is not None and operation in THRESHOLDS:
        params[THRESHOLDS[operation][0]] = threshold
    record = None
    tags: dict[str, str] = {}
    if collection:
        params["CollectionId"] = collection
        from facegate.store.records import CollectionRecord

        with store.reader() as tx:
            record = tx.get_collection(identity.organization, collection)
            tags = tx.get_tags(record.pk) if record else {}
        record = record or CollectionRecord(-1, identity.organization, collection, "", "", 0.0)
    decision = policies.decide(identity, operation, record, tags, params, case_ref)
    click.echo(f"key {identity.access_key_id}: organisation {identity.organization} ({identity.sector}), purpose {identity.purpose}")
    click.echo(f"context: {json.dumps(decision.context, sort_keys=True)}")
    click.echo(("ALLOW: " if decision.allowed else "DENY: ") + decision.explain())
    if not decision.allowed:
        sys.exit(1)


# -- audit -----------------------------------------------------------------------------------

@click.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log: show, export, verify."""


def _since(value: str | None) -> float | None:
    return None if value is None else _date(value, "--since")


def _verified_records(tx: Transaction) -> tuple[list[dict[str, Any]], bool]:
    """Every record, read in the same pass that verifies the log, and whether it verified.
    If not, the problems go to stderr and the command must exit 1 after its output, so no
    one mistakes a listing of an edited log for the truth."""
    from facegate.governance.audited_state import verify_database

    records: list[dict[str, Any]] = []
    verdict = verify_database(tx, lambda record, _: records.append(record))
    if not verdict.ok:
        click.echo("WARNING: the audit log does not verify (facegate audit verify); records may be altered or missing:", err=True)
        for problem in verdict.problems:
            click.echo(f"  {problem}", err=True)
    return records, verdict.ok


@audit_group.command("show")
@click.option("--since", help="ISO date or time, UTC.")
@click.option("--org", help="Only this organisation.")
@click.option("--op", help="Only this operation.")
@_data_dir
def audit_show(since: str | None, org: str | None, op: str | None, data_dir: Path | None) -> None:
    """One line per record. Filters read each record as it was hashed; if the log does not
    verify, a warning follows on stderr and the exit status is 1. An identification that
    awaits human review ends with `review=pending`; a reviewed one with its outcome
    (`review=confirmed`, `rejected` or `inconclusive`).

    \b
    Example:
      facegate audit show --since 2026-11-01 --op SearchFacesByImage
    """
    from facegate.governance import audit
    from facegate.governance.review_rules import review_states

    store, _ = existing_data_dir(data_dir)
    with store.snapshot() as tx:
        records, verified = _verified_records(tx)
    reviews = review_states(records)
    for r in audit.matching(records, _since(since), org, op):
        click.echo(_line(r) + (f" review={reviews[r['seq']]}" if r.get("seq") in reviews else ""))
    if not verified:
        sys.exit(1)


def _line(r: dict[str, Any]) -> str:
    if "unreadable_record" in r:
        return f"{r['seq']:>6} UNREADABLE {r['unreadable_record']!r}"
    try:
        when = dt.datetime.fromtimestamp(r["time"], dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        when = f"time={r.get('time')!r}"
    return (
        f"{r.get('seq')!s:>6} {when} {r.get('organization') or '-'} {r.get('purpose') or '-'} {r.get('operation')} "
        f"{r.get('collection') or '-'} {r.get('decision') or '-'} {r.get('status')} {r.get('error_type') or ''} "
        f"{json.dumps(r.get('summary', {}), sort_keys=True)}"
    )


@audit_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@_data_dir
def audit_export(fmt: str, out: Path | None, data_dir: Path | None) -> None:
    """Export every record. JSONL keeps each record exactly as hashed, so it can be verified.
    If the log does not verify, a warning follows on stderr and the exit status is 1.

    \b
    Example:
      facegate audit export --format jsonl --out audit.jsonl && facegate audit verify --file audit.jsonl
    """
    from facegate.governance import audit_export

    store, _ = existing_data_dir(data_dir)
    with store.snapshot() as tx:
        records, verified = _verified_records(tx)
    text = "".join(audit_export.jsonl(records) if fmt == "jsonl" else audit_export.csv_rows(records))
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
    if not verified:
        sys.exit(1)


def _anchor(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[int, str] | None:
    if value is None:
        return None
    seq, _, head_hash = value.partition(":")
    if not seq.isascii() or not seq.isdigit() or len(head_hash) != 64:
        raise click.BadParameter("expected SEQ:HASH, the head an earlier verify printed")
    return int(seq), head_hash


@audit_group.command("verify")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="A JSONL export to verify instead of the database.")
@click.option("--anchor", callback=_anchor, metavar="SEQ:HASH",
              help="A head an earlier verify printed, kept where the database's writers cannot reach: "
                   "the log must still hold that record with that hash.")
@_data_dir
@click.option("--json", "as_json", is_flag=True)
def audit_verify(file: Path | None, anchor: tuple[int, str] | None, data_dir: Path | None, as_json: bool) -> None:
    """Check the audit log; exits 1 and names every problem found.

    In the database: the hash chain, every column of every record against the hashed record,
    the head kept in the settings table, and that organisations, access keys, policy packs,
    the moratorium's end and consents are what the audited changes made them. A --file
    export is checked for its chain alone. Someone able to rewrite the whole database could
    rewrite all of that consistently: keep the printed head elsewhere and pass it back as
    --anchor.

    \b
    Example:
      facegate audit verify && facegate audit verify --file audit.jsonl
      facegate audit verify --anchor 183:9f2c...   # a head printed earlier
    """
    from facegate.governance import audit
    from facegate.governance.audited_state import verify_database

    if file is not None:
        try:
            records = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise click.ClickException(f"{file} is not JSONL: {exc}") from exc
        verdict = audit.verify(records, anchor=anchor)
    else:
        store, _ = existing_data_dir(data_dir)
        with store.snapshot() as tx:
            verdict = verify_database(tx, anchor=anchor)
    result = {"ok": verdict.ok, "records": verdict.records, "first_bad_seq": verdict.first_bad_seq,
              "problem": verdict.problem, "problems": list(verdict.problems), "head_hash": verdict.head_hash}
    if as_json:
        click.echo(json.dumps(result))
    elif verdict.ok:
        click.echo(f"OK: {verdict.records} records, chain intact, head {verdict.records}:{verdict.head_hash}")
    else:
        click.echo("\n".join(f"TAMPERED: {problem}" for problem in verdict.problems))
    if not verdict.ok:
        sys.exit(1)


# -- consent and retention ---------------------------------------------------------------------

@click.group()
def consent() -> None:
    """Consent records for collections tagged facegate:consent=required."""


@consent.command("add")
@click.argument("consent_id")
@click.option("--subject", required=True, help="Who consented (a reference, not biometric data).")
@click.option("--expires", required=True, help="YYYY-MM-DD (UTC).")
@click.option("--org", default="default", show_default=True, help="An organisation that exists (facegate orgs create).")
@_data_dir
def consent_add(consent_id: str, subject: str, expires: str, org: str, data_dir: Path | None) -> None:
    """Record consent; index the subject's faces with ExternalImageId=CONSENT_ID.

    \b
    Example:
      facegate orgs create acme --sector commercial
      facegate consent add consent-0042 --subject "employee 42" --expires 2027-12-31 --org acme
    """
    from facegate.governance.identity import IdentityError
    from facegate.governance.retention import add_consent

    store, _ = existing_data_dir(data_dir)
    try:
        add_consent(store, org, consent_id, subject, _date(expires, "--expires"))
    except (IdentityError, KeyError) as exc:
        raise click.ClickException(exc.args[0]) from exc
    click.echo(f"consent {consent_id} recorded until {expires}")


@consent.command("revoke")
@click.argument("consent_id")
@click.option("--org", default="default", show_default=True)
@_data_dir
def consent_revoke(consent_id: str, org: str, data_dir: Path | None) -> None:
    """Revoke consent and delete every face indexed under it (audited)."""
    from facegate.governance.retention import revoke_consent

    store, _ = existing_data_dir(data_dir)
    try:
        record = revoke_consent(store, org, consent_id)
    except KeyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked {consent_id}; deleted {record['summary']['faces_deleted']} face(s)")


@click.group()
def retention() -> None:
    """Retention: delete faces older than their collection's facegate:retention-days, and
    faces indexed under a consent that has expired."""


@retention.command("enforce")
@_data_dir
def retention_enforce(data_dir: Path | None) -> None:
    """Sweep now; every deletion is audited. The server also sweeps at start-up and hourly.
    Faces past retention go in small batches, each its own transaction and audit record, so
    a server on the same database keeps answering while a large sweep runs."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from facegate.governance.retention import enforce_retention

    store, _ = existing_data_dir(data_dir)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=Console(stderr=True),
                  transient=True) as progress:
        task = progress.add_task("sweeping: 0 faces past retention deleted", total=None)
        deleted_so_far = 0

        def batch_done(faces: int, _held_seconds: float) -> None:
            nonlocal deleted_so_far
            deleted_so_far += faces
            progress.update(task, description=f"sweeping: {deleted_so_far} faces past retention deleted")

        records = enforce_retention(store, now=time.time(), on_batch=batch_done)
    deleted = sum(r["summary"]["faces_deleted"] for r in records)
    click.echo(f"deleted {deleted} face(s) in {len(records)} sweep(s) (collections past retention, expired consents)")
