"""Cedar policy decisions over the shipped (and your own) policy packs.

A pack is a ``.cedar`` file in ``governance/packs/`` (or in ``<data dir>/packs/`` for
your own). Each policy carries ``@id`` and ``@reason`` annotations, so a denial can name
the pack, the rule and why. Which packs are on is kept in the database, so
``facegate policy enable`` takes effect on a running server at its next request.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from facegate.governance import audit
from facegate.governance.consent import consent_required
from facegate.governance.identity import Identity
from facegate.governance.s3_access import allowed_buckets, requested_buckets
from facegate.store.database import Store
from facegate.store.records import CollectionRecord
from facegate.store.transaction import Transaction

ALWAYS_ON = "baseline"
DEFAULT_STATES = {"baseline": True, "us-police-moratorium-2020": True, "threshold-floors": True, "eu-ai-act-art5": False}
"""Packs not listed here (your own) start disabled until `facegate policy enable`."""

MORATORIUM_END_SETTING = "moratorium_ends"


class PolicyError(ValueError):
    """An administrative change to the policies that cannot be made."""


def moratorium_end(date: str) -> int:
    """``none`` is 0 (until further notice); ``YYYY-MM-DD`` is that midnight UTC, in epoch seconds."""
    if date == "none":
        return 0
    try:
        return int(dt.datetime.fromisoformat(date).replace(tzinfo=dt.timezone.utc).timestamp())
    except ValueError as exc:
        raise PolicyError(f"the moratorium's end must be YYYY-MM-DD or none, got {date!r}") from exc


def set_moratorium_end(store: Store, date: str, actor: str = audit.ADMINISTRATOR) -> int:
    """Set when us-police-moratorium-2020 ends, audited in the same transaction; returns the setting."""
    value = moratorium_end(date)
    with store.transaction() as tx:
        tx.set_setting(MORATORIUM_END_SETTING, str(value))
        audit.append(tx, audit.administrative("facegate:PolicySetting", {"moratorium_ends": date, "value": value}, actor))
    return value


THRESHOLDS: dict[str, tuple[str, float]] = {
    "SearchFaces": ("FaceMatchThreshold", 80.0),
    "SearchFacesByImage": ("FaceMatchThreshold", 80.0),
    "CompareFaces": ("SimilarityThreshold", 80.0),
    "SearchUsers": ("UserMatchThreshold", 80.0),
    "SearchUsersByImage": ("UserMatchThreshold", 80.0),
    "AssociateFaces": ("UserMatchThreshold", 75.0),
    "StartFaceSearch": ("FaceMatchThreshold", 80.0),
}
"""Each thresholded operation's parameter and Rekognition's default for it."""

VIDEO_OPERATIONS = {op: "stored" for op in ("StartFaceDetection", "GetFaceDetection", "StartFaceSearch", "GetFaceSearch")}
"""``context.video``: "stored" for recorded video analysed after the event (the EU AI Act's
post-event identification), "" for still images; a real-time stream would be "live"."""


@dataclass(frozen=True)
class Pack:
    name: str
    path: Path
    enabled: bool

    @property
    def text(self) -> str:
        return self.path.read_text()


@dataclass(frozen=True)
class DecidingPolicy:
    pack: str
    id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.pack}/{self.id}"


@dataclass(frozen=True)
class PolicyDecision:
    allowed: bool
    policies: tuple[DecidingPolicy, ...]
    context: dict[str, Any]

    def explain(self) -> str:
        if self.allowed:
            return "allowed by " + ", ".join(str(p) for p in self.policies)
        return "; ".join(f"denied by policy pack '{p.pack}' ({p.id}): {p.reason}" for p in self.policies)


def requested_threshold(operation: str, params: dict[str, Any]) -> float | None:
    """The threshold a request will be answered at: its own, else the operation's default."""
    if operation not in THRESHOLDS:
        return None
    name, default = THRESHOLDS[operation]
    return float(params.get(name, default))


class Policies:
    def __init__(self, store: Store, custom_dir: Path | None = None) -> None:
        self.store = store
        self.custom_dir = custom_dir
        self._schema = cedarpy.Schema.from_str(resources.files("facegate.governance").joinpath("facegate.cedarschema").read_text())
        self._shipped_dir = Path(str(resources.files("facegate.governance").joinpath("packs")))

    def _pack_files(self) -> dict[str, Path]:
        """Listed afresh for every decision, so a pack file added or removed counts at once."""
        files = _cedar_files(self._shipped_dir)
        if self.custom_dir is not None and self.custom_dir.is_dir():
            files.update(_cedar_files(self.custom_dir))
        return files

    def packs(self) -> list[Pack]:
        with self.store.reader() as tx:
            states = tx.pack_states()
        return [Pack(name, path, _enabled(name, states)) for name, path in self._pack_files().items()]

    def pack(self, name: str) -> Pack:
        for pack in self.packs():
            if pack.name == name:
                return pack
        raise KeyError(f"no policy pack {name!r}; see `facegate policy list`")

    def set_enabled(self, name: str, enabled: bool, actor: str = audit.ADMINISTRATOR) -> Pack:
        """Turn a pack on or off, audited in the same transaction; it takes effect at the next
        request. A pack that does not validate against the schema is refused."""
        try:
            pack = self.pack(name)
        except KeyError as exc:
            raise PolicyError(exc.args[0]) from exc
        if name == ALWAYS_ON and not enabled:
            raise PolicyError("the baseline pack is always on")
        problems = self.validate(pack.text)
        if problems:
            raise PolicyError(f"{name} does not validate against the schema: {problems}")
        with self.store.transaction() as tx:
            tx.set_pack_state(name, enabled)
            audit.append(tx, audit.administrative("facegate:PolicyEnable" if enabled else "facegate:PolicyDisable", {"pack": name}, actor))
        return Pack(name, pack.path, enabled)

    def validate(self, text: str) -> list[str]:
        result = cedarpy.validate_policies(text, self._schema)
        return [] if result.validation_passed else [str(e) for e in result.errors]

    def decide(
        self,
        identity: Identity,
        operation: str,
        collection: CollectionRecord | None,
        tags: dict[str, str],
        params: dict[str, Any],
        case_reference: str | None,
        consent_valid: bool = False,
        now: float | None = None,
        tx: Transaction | None = None,
    ) -> PolicyDecision:
        """Which packs are on and the settings the packs see are read in ``tx`` (the gate's one
        read for the request), or in a reader of this call's own."""
        if tx is None:
            with self.store.reader() as own:
                return self.decide(identity, operation, collection, tags, params, case_reference, consent_valid, now, own)
        ends = int(tx.get_setting(MORATORIUM_END_SETTING) or 0)
        buckets = allowed_buckets(tx, identity.organization)
        policy_set, annotations = self._policy_set(tx.pack_states())
        threshold = requested_threshold(operation, params)
        context = {
            "now": int(now if now is not None else time.time()),
            "has_threshold": threshold is not None,
            "threshold": int(math.floor(threshold)) if threshold is not None else 100,
            "has_case_reference": bool(case_reference),
            "moratorium_ends": ends,
            "consent_required": operation == "IndexFaces" and consent_required(tags),
            "consent_valid": consent_valid,
            "s3_buckets": requested_buckets(params),
            "video": VIDEO_OPERATIONS.get(operation, ""),
        }
        principal = {"type": "Key", "id": identity.access_key_id}
        entities = [
            {"uid": {"type": "Organization", "id": identity.organization},
             "attrs": {"sector": identity.sector, "flags": list(identity.flags), "s3_buckets": buckets}, "parents": []},
            {"uid": principal,
             "attrs": {"organization": identity.organization, "sector": identity.sector,
                       "purpose": identity.purpose, "flags": list(identity.flags), "s3_buckets": buckets},
             "parents": [{"type": "Organization", "id": identity.organization}]},
        ]
        if collection is not None:
            resource = {"type": "Collection", "id": collection.collection_id}
            entities.append({"uid": resource, "attrs": {"owner": collection.owner, "tags": [f"{k}={v}" for k, v in tags.items()]}, "parents": []})
        else:
            resource = {"type": "Service", "id": "rekognition"}
            entities.append({"uid": resource, "attrs": {}, "parents": []})
        request = {"principal": principal, "action": {"type": "Action", "id": operation}, "resource": resource, "context": context}
        result = cedarpy.is_authorized(request, policy_set, entities, self._schema)
        if result.diagnostics.errors:
            raise RuntimeError(f"policy evaluation failed: {result.diagnostics.errors}")
        deciding = tuple(annotations[r] for r in result.diagnostics.reasons if r in annotations)
        return PolicyDecision(result.allowed, deciding, context)

    def _policy_set(self, states: dict[str, bool]) -> tuple[cedarpy.PolicySet, dict[str, DecidingPolicy]]:
        """The enabled packs, parsed. The files are read for every decision (about 10 us each),
        so an edit counts at once whatever the file system's timestamps can tell; parsing,
        the dear part, is skipped while the text is what it was."""
        return _compile(tuple((name, path.read_text()) for name, path in self._pack_files().items() if _enabled(name, states)))


def _enabled(name: str, states: dict[str, bool]) -> bool:
    return name == ALWAYS_ON or states.get(name, DEFAULT_STATES.get(name, False))


def _cedar_files(directory: Path) -> dict[str, Path]:
    """``pack name -> file`` for the ``.cedar`` files in ``directory``, in name order."""
    with os.scandir(directory) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".cedar") and not e.name.startswith("."))
    return {name.removesuffix(".cedar"): directory / name for name in names}


@functools.lru_cache(maxsize=16)
def _compile(packs: tuple[tuple[str, str], ...]) -> tuple[cedarpy.PolicySet, dict[str, DecidingPolicy]]:
    """The enabled packs as one parsed policy set, and Cedar's positional policy ids
    ("policy0", ...) mapped back to each policy's pack, @id and @reason."""
    text = "\n".join(body for _, body in packs)
    parsed = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    ids = sorted(parsed, key=lambda k: int(k.removeprefix("policy")))
    annotations: dict[str, DecidingPolicy] = {}
    position = 0
    for name, body in packs:
        count = len(json.loads(cedarpy.policies_to_json_str(body))["staticPolicies"])
        for key in ids[position : position + count]:
            notes = parsed[key].get("annotations", {})
            annotations[key] = DecidingPolicy(name, notes.get("id", key), notes.get("reason", ""))
        position += count
    return cedarpy.PolicySet.from_str(text), annotations
