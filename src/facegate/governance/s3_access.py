"""Which S3 buckets an organisation may make facegate read, and what the audit log keeps of them.

facegate reads ``S3Object`` images with its operator's S3 credentials, not the caller's, so
without a limit any organisation's key could have facegate read any bucket those credentials
reach, another organisation's included. Each organisation therefore has a bucket allow-list,
empty until the operator fills it (``facegate orgs s3-buckets ORG --allow BUCKET``; ``*``
allows every bucket, for a single-tenant server). The list is policy context: the principal's
``s3_buckets`` against the request's ``context.s3_buckets`` (``facegate.cedarschema``), and the
baseline pack's ``s3-buckets-allowed`` rule refuses a request before anything is read.
Changes are audited (``facegate:OrganizationS3Buckets``) and replayed by ``audit verify``.

The audit record of a request names every object it asked for (member, bucket, key,
version), never the object's content.
"""

from __future__ import annotations

import json
import re
from typing import Any

from facegate.governance import audit
from facegate.governance.identity import IdentityError, ensure_organization
from facegate.store.database import Store
from facegate.store.transaction import Transaction

EVERY_BUCKET = "*"
SETTING_PREFIX = "s3_buckets:"
"""Each organisation's list is the setting ``s3_buckets:<organisation>``: a sorted JSON list."""

CHANGE_OPERATION = "facegate:OrganizationS3Buckets"

_BUCKET = re.compile(r"[0-9A-Za-z.\-_]{3,255}")
"""Bucket names as Rekognition's ``S3Object.Bucket`` accepts them."""


def requested_objects(params: dict[str, Any]) -> list[dict[str, str]]:
    """Every ``S3Object`` a request names (``Image``, ``SourceImage``, ``TargetImage``,
    ``Video``, ...), as the audit log records it: member, bucket, key and version."""
    found: list[dict[str, str]] = []

    def walk(value: Any, path: str) -> None:
        if not isinstance(value, dict):
            return
        for name, item in value.items():
            member = f"{path}.{name}" if path else name
            if name == "S3Object" and isinstance(item, dict):
                entry = {"member": path, "bucket": item.get("Bucket"), "key": item.get("Name"), "version": item.get("Version")}
                found.append({k: v for k, v in entry.items() if isinstance(v, str)})
            else:
                walk(item, member)

    walk(params, "")
    return found


def audited_objects(params: dict[str, Any]) -> dict[str, Any]:
    """``{"s3_objects": [...]}`` for a request's audit record, or nothing when it names none."""
    objects = requested_objects(params)
    return {"s3_objects": objects} if objects else {}


def requested_buckets(params: dict[str, Any]) -> list[str]:
    """The buckets a request would have facegate read, each once."""
    return sorted({o["bucket"] for o in requested_objects(params) if "bucket" in o})


def allowed_buckets(tx: Transaction, organization: str) -> list[str]:
    """The organisation's allow-list (empty: no bucket)."""
    value = tx.get_setting(SETTING_PREFIX + organization)
    return json.loads(value) if value else []


def set_allowed_buckets(
    store: Store, organization: str, allow: tuple[str, ...] = (), remove: tuple[str, ...] = (),
    actor: str = audit.ADMINISTRATOR,
) -> list[str]:
    """Add ``allow`` to and take ``remove`` from the organisation's list, audited in the same
    transaction; takes effect at the next request. Returns the new list."""
    bad = [b for b in allow if b != EVERY_BUCKET and not _BUCKET.fullmatch(b)]
    if bad:
        raise IdentityError(f"not a bucket name: {', '.join(map(repr, bad))} (3-255 of A-Z a-z 0-9 . - _, or * for every bucket)")
    with store.transaction() as tx:
        ensure_organization(tx, organization, actor)
        before = allowed_buckets(tx, organization)
        after = sorted((set(before) | set(allow)) - set(remove))
        tx.set_setting(SETTING_PREFIX + organization, json.dumps(after))
        summary = {"buckets": after, "allowed": sorted(allow), "removed": sorted(remove)}
        audit.append(tx, audit.administrative(CHANGE_OPERATION, summary, actor, organization=organization))
    return after
