"""Retention and consent, enforced by deleting faces and recording every deletion.

``facegate:retention-days`` on a collection (1095, BIPA's three-year maximum, by default)
bounds how long a face may stay. A consent record (``facegate consent add``) names the
ExternalImageId its faces are indexed under; revoking it, or letting it expire, deletes
those faces. The sweep runs at start-up, every ``interval`` seconds while serving, and on
``facegate retention enforce``.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from facegate.governance import audit
from facegate.governance.gate import DEFAULT_RETENTION_DAYS
from facegate.governance.identity import ensure_organization
from facegate.service.facegate_tags import RETENTION_DAYS_TAG, retention_days
from facegate.store.database import Store
from facegate.store.records import CollectionRecord
from facegate.store.transaction import Transaction

SWEEPER = {"key_id": "facegate-retention", "organization": None, "purpose": "retention", "decision": "allow"}

BATCH_SIZES = (16, 250)
"""The fewest and the most faces one transaction of a sweep deletes. The sweep holds the write
lock only for one batch at a time, so requests interleave with a large sweep instead of
queueing behind all of it, each behind one batch at most. Measured sweeping 100,000 due faces
on 2 busy cores: 94 ms per batch of 250, 144 ms per 500; at 10M faces, 47 ms per batch of 250
(p50) and 143 ms at worst. Batches of up to 2,000 cleared a 1M sweep faster (2.0 s against
3.0 s) but let the worst search beside it wait 197 ms, against 137 ms. Below 16 faces a
batch's fixed costs (its audit record, its commit and fsync) are most of it.

A sweep starts with the fewest and doubles while batches are quick, so that no batch is large
before one has been timed. Measured at 10M faces (2026-12-08), a first batch of 250 took 118 ms,
where the 170 after it took 39 ms at p50, and the worst search beside the sweep waited for that
first batch (128 ms). Reaching 250 costs four batches more."""
BATCH_SECONDS = 0.05
"""How long a batch should hold the write lock at most. What a batch costs depends on the disk,
the collection's size and what else runs, so the size follows the time: a batch that took
longer halves the next one, one that took under half of it doubles the next, within
``BATCH_SIZES``."""
BATCH_PAUSE_SECONDS = 0.005
"""How long the sweep leaves the write lock free between batches. Taken again at once, it went
straight back to the sweep: a request's audit record waiting for it polls every millisecond
from another process, and in this one is woken only after the sweep holds it again, so a search
beside the sweep waited for two batches or more."""


def _retention_days(tags: dict[str, str]) -> int:
    """The collection's retention; a value stored before values were checked, and not
    valid now, counts as the default rather than as "delete everything" (0, -1)."""
    return retention_days(tags.get(RETENTION_DAYS_TAG, "")) or DEFAULT_RETENTION_DAYS


BatchDone = Callable[[int, float], None]
"""Told after each batch of a retention sweep: faces deleted, seconds the write lock was held."""


def enforce_retention(store: Store, now: float | None = None, on_batch: BatchDone | None = None) -> list[dict[str, Any]]:
    """Delete every face past its collection's retention (one audit record per batch of at
    most ``BATCH_SIZES[1]`` faces) and every face indexed under a consent that has expired
    (one per consent). ``on_batch`` hears of each batch as it commits: the CLI's progress,
    and the benchmark's measure of how long requests could have waited behind one."""
    now = time.time() if now is None else now
    records = []
    with store.reader() as tx:
        collections = tx.all_collections()
    for collection in collections:
        records += _sweep_collection(store, collection, now, on_batch or (lambda _faces, _seconds: None))
    with store.reader() as tx:
        lapsed = tx.lapsed_consents(now)
    for consent in lapsed:
        with store.transaction() as tx:
            records.append(_end_consent(tx, consent.organization, consent.consent_id, "facegate:ConsentExpired", now=now))
    return records


def _sweep_collection(store: Store, collection: CollectionRecord, now: float, on_batch: BatchDone) -> list[dict[str, Any]]:
    """Delete a collection's faces past retention in batches: one transaction and one audit
    record per batch, oldest faces first."""
    records = []
    size = BATCH_SIZES[0]
    while True:
        with store.transaction() as tx:
            holding_since = time.perf_counter()  # the write lock is held from here to the commit
            cutoff = now - _retention_days(tx.get_tags(collection.pk)) * 86400
            expired = tx.face_ids_created_before(collection.pk, cutoff, size)
            if not expired:
                return records
            tx.delete_faces(collection.pk, expired)  # a face's user association goes with its row
            records.append(audit.append(tx, {
                **SWEEPER, "time": now, "organization": collection.owner, "operation": "facegate:RetentionDelete",
                "collection": collection.collection_id, "status": 200, "error_type": None, "policies": ["retention"],
                "summary": {"faces_deleted": len(expired), "face_ids": expired, "retention_cutoff": cutoff},
            }))
        held = time.perf_counter() - holding_since
        on_batch(len(expired), held)
        if len(expired) < size:
            return records
        size = _next_batch_size(size, held)
        time.sleep(BATCH_PAUSE_SECONDS)


def _next_batch_size(size: int, held_seconds: float) -> int:
    smallest, largest = BATCH_SIZES
    if held_seconds > BATCH_SECONDS:
        return max(smallest, size // 2)
    if held_seconds < BATCH_SECONDS / 2:
        return min(largest, size * 2)
    return size


def add_consent(
    store: Store, organization: str, consent_id: str, subject: str, expires_at: float, actor: str = audit.ADMINISTRATOR
) -> dict[str, Any]:
    """Record a consent (epoch seconds of expiry) for an organisation that exists, audited in
    the same transaction. Raises ``IdentityError`` for an unknown organisation, ``KeyError``
    for a consent id already used."""
    with store.transaction() as tx:
        ensure_organization(tx, organization, actor)
        if tx.get_consent(organization, consent_id) is not None:
            raise KeyError(f"consent {consent_id!r} already exists for organisation {organization!r}")
        tx.create_consent(organization, consent_id, subject, expires_at)
        expires = dt.datetime.fromtimestamp(expires_at, dt.timezone.utc).isoformat()
        summary = {"organization": organization, "consent_id": consent_id, "expires": expires, "expires_at": expires_at}
        return audit.append(tx, audit.administrative("facegate:ConsentAdd", summary, actor, organization=organization))


def revoke_consent(store: Store, organization: str, consent_id: str, actor: str = audit.ADMINISTRATOR) -> dict[str, Any]:
    """Revoke a consent record and delete the faces indexed under it, in one transaction."""
    with store.transaction() as tx:
        if tx.get_consent(organization, consent_id) is None:
            raise KeyError(f"no consent {consent_id!r} for organisation {organization!r}")
        return _end_consent(tx, organization, consent_id, "facegate:ConsentRevoke", actor=actor)


def _end_consent(
    tx: Transaction, organization: str, consent_id: str, operation: str, actor: str = SWEEPER["key_id"], now: float | None = None
) -> dict[str, Any]:
    """Mark the consent ended, delete every face indexed under it, and audit both."""
    tx.revoke_consent(organization, consent_id, at=now)
    faces = tx.faces_with_external_id(organization, consent_id)
    by_collection: dict[int, list[str]] = {}
    for face in faces:
        by_collection.setdefault(face.collection_pk, []).append(face.face_id)
    for collection_pk, face_ids in by_collection.items():  # one statement a collection, not one a face
        tx.delete_faces(collection_pk, face_ids)
    return audit.append(tx, {
        **SWEEPER, "key_id": actor, "organization": organization, "operation": operation,
        "collection": None, "status": 200, "error_type": None, "policies": ["consent"],
        "summary": {"consent_id": consent_id, "faces_deleted": len(faces), "face_ids": [f.face_id for f in faces]},
    })


def start_sweeper(store: Store, interval: float) -> threading.Event:
    """Sweep now and then every ``interval`` seconds in a daemon thread; set the event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            enforce_retention(store)
            store.prune_index_log()  # the same hourly housekeeping, for the store's change log
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="facegate-retention", daemon=True).start()
    return stop
