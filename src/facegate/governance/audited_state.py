"""Everything ``facegate audit verify`` checks: the log, and that the state deciding requests
is exactly what the audited changes made it.

Organisations (sector, flags), access keys (organisation, purpose, name, revoked), which
policy packs are on, the moratorium's end, consent records and console accounts (role,
password hash) live in ordinary tables that
anyone holding the database could edit. Each is changed only together with its audit record
(``facegate:OrganizationCreate``, ``facegate:AccessKeyCreate``, ...), so replaying those
records gives the state there should be, and every difference from the tables is reported.
A database that held state before key changes were audited starts from the
``facegate:StateBaseline`` record written by the migration that introduced this check
(``store/migrations.py``); whatever was edited before that record is beyond its reach.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from facegate.governance import audit
from facegate.governance.console_accounts import credential
from facegate.governance.policy import ALWAYS_ON, DEFAULT_STATES, MORATORIUM_END_SETTING, moratorium_end
from facegate.governance.s3_access import CHANGE_OPERATION as S3_BUCKETS_CHANGE, SETTING_PREFIX as S3_BUCKETS_SETTING
from facegate.store import console_accounts
from facegate.store.transaction import Transaction


def verify_database(
    tx: Transaction, observe: audit.Observer | None = None, anchor: audit.Anchor | None = None
) -> audit.Verdict:
    """The chain, every column, the head (and ``anchor``), then the decision-making state.
    ``observe`` sees every record on the way (``audit show`` lists them from the same pass)."""
    replay = _Replay()

    def see(record: dict[str, Any], chained: bool) -> None:
        if chained:
            replay.apply(record)
        if observe is not None:
            observe(record, chained)

    verdict = audit.verify_log(tx, see, anchor)
    if not verdict.ok:
        return verdict
    problems = replay.unexplained(tx)
    if problems:
        return audit.Verdict(False, verdict.records, None, tuple(problems), None)
    return verdict


def _organization(summary: dict[str, Any]) -> dict[str, Any]:
    return {"sector": summary.get("sector"), "flags": sorted(summary.get("flags") or [])}


class _Replay:
    """The state the audited changes leave, each item with the seq of the record that set it."""

    def __init__(self) -> None:
        self.organizations: dict[str, tuple[dict[str, Any], int]] = {}
        self.keys: dict[str, tuple[dict[str, Any], int]] = {}
        self.packs: dict[str, tuple[bool, int]] = {}
        self.moratorium: tuple[int, int | None] = (0, None)
        self.consents: dict[tuple[str, str], tuple[dict[str, Any], int]] = {}
        self.s3_buckets: dict[str, tuple[list[str], int]] = {}
        self.console_accounts: dict[str, tuple[dict[str, Any], int]] = {}
        self._apply: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {
            "facegate:StateBaseline": self._baseline,
            "facegate:OrganizationCreate": self._organization_created,
            "facegate:AccessKeyCreate": self._key_created,
            "facegate:AccessKeyRevoke": self._key_revoked,
            "facegate:PolicyEnable": lambda summary, record: self._pack(summary, record, True),
            "facegate:PolicyDisable": lambda summary, record: self._pack(summary, record, False),
            "facegate:PolicySetting": self._moratorium,
            "facegate:ConsentAdd": self._consent_added,
            "facegate:ConsentRevoke": self._consent_ended,
            "facegate:ConsentExpired": self._consent_ended,
            S3_BUCKETS_CHANGE: self._s3_buckets_set,
            "facegate:ConsoleUserAdd": self._console_account_added,
            "facegate:ConsoleUserRemove": lambda summary, _: self.console_accounts.pop(summary.get("name"), None),
            "facegate:ConsoleUserRole": lambda summary, record: self._console_account_changed(summary, record, "role"),
            "facegate:ConsoleUserPassword": lambda summary, record: self._console_account_changed(summary, record, "credential"),
        }

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one record. Only a change that was made (status 200) counts: a request that
        merely names a ``facegate:*`` operation is refused and recorded with its error."""
        operation, summary = record.get("operation"), record.get("summary")
        if operation in self._apply and record.get("status") == 200 and isinstance(summary, dict):
            self._apply[operation](summary, record)

    def _baseline(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        seq = record["seq"]
        self.organizations = {o["name"]: (_organization(o), seq) for o in summary.get("organizations", [])}
        self.keys = {
            k["access_key_id"]: ({n: k.get(n) for n in ("organization", "purpose", "name", "revoked")}, seq)
            for k in summary.get("access_keys", [])
        }
        self.packs = {name: (bool(on), seq) for name, on in summary.get("policy_packs", {}).items()}
        self.moratorium = (int(summary.get("moratorium_ends", 0)), seq)
        self.consents = {
            (c["organization"], c["consent_id"]): ({"expires_at": c["expires_at"], "ended": bool(c["ended"])}, seq)
            for c in summary.get("consents", [])
        }

    def _organization_created(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        self.organizations[summary.get("name")] = (_organization(summary), record["seq"])

    def _key_created(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        fields = {n: summary.get(n) for n in ("organization", "purpose", "name")}
        self.keys[summary.get("access_key_id")] = ({**fields, "revoked": False}, record["seq"])

    def _key_revoked(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        key = summary.get("access_key_id")
        if key in self.keys:
            self.keys[key] = ({**self.keys[key][0], "revoked": True}, record["seq"])

    def _pack(self, summary: dict[str, Any], record: dict[str, Any], enabled: bool) -> None:
        self.packs[summary.get("pack")] = (enabled, record["seq"])

    def _moratorium(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        if "moratorium_ends" in summary:
            self.moratorium = (summary.get("value", moratorium_end(summary["moratorium_ends"])), record["seq"])

    def _consent_added(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        key = (summary.get("organization"), summary.get("consent_id"))
        self.consents[key] = ({"expires_at": summary.get("expires_at"), "ended": False}, record["seq"])

    def _consent_ended(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        key = (record.get("organization"), summary.get("consent_id"))
        if key in self.consents:
            self.consents[key] = ({**self.consents[key][0], "ended": True}, record["seq"])

    def _s3_buckets_set(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        self.s3_buckets[record.get("organization")] = (summary.get("buckets") or [], record["seq"])

    def _console_account_added(self, summary: dict[str, Any], record: dict[str, Any]) -> None:
        fields = {"role": summary.get("role"), "credential": summary.get("credential")}
        self.console_accounts[summary.get("name")] = (fields, record["seq"])

    def _console_account_changed(self, summary: dict[str, Any], record: dict[str, Any], field: str) -> None:
        name = summary.get("name")
        if name in self.console_accounts:
            self.console_accounts[name] = ({**self.console_accounts[name][0], field: summary.get(field)}, record["seq"])

    def unexplained(self, tx: Transaction) -> list[str]:
        """Each difference between the tables and the replayed state, in words."""
        return [
            *self._organizations(tx), *self._keys(tx), *self._packs(tx), *self._moratorium_setting(tx), *self._consents(tx),
            *self._console_accounts(tx), *self._s3_bucket_lists(tx),
        ]

    def _organizations(self, tx: Transaction) -> list[str]:
        table = {o.name: {"sector": o.sector, "flags": sorted(o.flags)} for o in tx.list_organizations()}
        return _differences("organisation", "organizations", table, self.organizations)

    def _keys(self, tx: Transaction) -> list[str]:
        table = {
            k.access_key_id: {"organization": k.owner, "purpose": k.purpose, "name": k.name, "revoked": k.revoked_at is not None}
            for k in tx.list_access_keys()
        }
        return _differences("access key", "access_keys", table, self.keys)

    def _packs(self, tx: Transaction) -> list[str]:
        rows = tx.pack_states()
        problems = []
        for name in sorted((rows.keys() | self.packs.keys() | DEFAULT_STATES.keys()) - {ALWAYS_ON}):
            default = DEFAULT_STATES.get(name, False)
            on = rows.get(name, default)
            audited, seq = self.packs.get(name, (default, None))
            if on != audited:
                why = f"record {seq} turned it {_on(audited)}" if seq else f"it is {_on(audited)} by default and no audit record changed it"
                problems.append(f"policy pack {name} is {_on(on)} in the policy_packs table, but {why}")
        return problems

    def _moratorium_setting(self, tx: Transaction) -> list[str]:
        stored = tx.get_setting(MORATORIUM_END_SETTING)
        audited, seq = self.moratorium
        try:
            value = int(stored or 0)
        except ValueError:
            value = None
        if value == audited:
            return []
        why = f"record {seq} set it to {audited}" if seq else "no audit record set it"
        return [f"the moratorium's end is {stored!r} in the settings table, but {why}"]

    def _consents(self, tx: Transaction) -> list[str]:
        table = {
            (c.organization, c.consent_id): {"expires_at": c.expires_at, "ended": c.revoked_at is not None}
            for c in tx.list_consents()
        }
        return _differences("consent", "consents", table, self.consents)


    def _s3_bucket_lists(self, tx: Transaction) -> list[str]:
        """Each organisation's S3 bucket allow-list (a setting) against the last change recorded."""
        names = {o.name for o in tx.list_organizations()} | {k.owner for k in tx.list_access_keys()} | set(self.s3_buckets)
        problems = []
        for name in sorted(names):
            stored = tx.get_setting(S3_BUCKETS_SETTING + name)
            audited, seq = self.s3_buckets.get(name, ([], None))
            if (stored or "[]") != json.dumps(audited):
                why = f"record {seq} set it to {json.dumps(audited)}" if seq else "no audit record set it"
                problems.append(f"organisation {name!r} may read S3 buckets {stored} in the settings table, but {why}")
        return problems

    def _console_accounts(self, tx: Transaction) -> list[str]:
        table = {a.name: {"role": a.role, "credential": credential(a.password_hash)} for a in console_accounts.list_accounts(tx)}
        return _differences("console account", "console_accounts", table, self.console_accounts)


def _on(enabled: bool) -> str:
    return "on" if enabled else "off"


def _differences(
    kind: str, table_name: str, table: dict[Any, dict[str, Any]], audited: dict[Any, tuple[dict[str, Any], int]]
) -> list[str]:
    """Rows with no audited creation, audited items with no row, and each field that differs."""
    problems = []
    for name in sorted(table.keys() | audited.keys(), key=repr):
        if name not in audited:
            problems.append(f"{kind} {name!r} is in the {table_name} table but no audit record created it")
        elif name not in table:
            problems.append(f"{kind} {name!r} was recorded by record {audited[name][1]} but is missing from the {table_name} table")
        else:
            expected, seq = audited[name]
            problems += [
                f"{kind} {name!r} has {field} {table[name][field]!r} in the {table_name} table, but record {seq} says {value!r}"
                for field, value in expected.items() if table[name].get(field) != value
            ]
    return problems
