"""Bulk enrolment (``facegate index-dir``) governed and audited like IndexFaces.

A run acts as one organisation's access key. Before any image is analysed, the Cedar packs
decide ``IndexFaces`` on the collection for that key exactly as the gate does for a request
(a denied key indexes nothing, and the denial is recorded). Each batch is written in one
transaction that first checks again (the key not revoked, the collection still there, and,
in a collection tagged ``facegate:consent=required``, each image's ExternalImageId naming a
live consent, decided per image as the gate would) and commits the faces together with
their audit record (FaceIds, ExternalImageIds). The run ends with one summary record
(images seen, indexed, without a face, unreadable, denied, faces, seconds), also when it
fails or is interrupted. Every record's operation is ``facegate:IndexDirectory``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from facegate.governance import audit
from facegate.governance.consent import consent_required, live_consent
from facegate.governance.identity import Identity, identity_of
from facegate.governance.policy import Policies, PolicyDecision
from facegate.governance.rejections import Rejection, RejectionLog
from facegate.service import exceptions
from facegate.service.bulk_indexing import AnalysedImage, face_records
from facegate.service.context import Scope, Service, require_collection
from facegate.store.database import Store
from facegate.store.records import CollectionRecord, FaceRecord
from facegate.store.transaction import Transaction

OPERATION = "facegate:IndexDirectory"
"""The operation every record of a run carries; its policies are decided as ``IndexFaces``."""
ACTION = "IndexFaces"
SOURCE = "cli"

INDEXED, NO_FACE, UNREADABLE, DENIED = "indexed", "no_face", "unreadable", "denied"


class UnknownAccessKey(LookupError):
    """The access key does not exist or was revoked (recorded in the rejection log)."""


def active_identity(store: Store, access_key_id: str, run_id: str) -> Identity:
    """The active key's identity, read with the key as the server reads it. An unknown or
    revoked key is refused before any decision, as SigV4 refuses it over the wire, and leaves
    a record in the rejection log."""
    with store.reader() as tx:
        found = tx.access_key_with_owner(access_key_id)
    if found is None or found[0].revoked_at is not None:
        RejectionLog(store).record(Rejection(run_id, SOURCE, access_key_id[:128], OPERATION, "UnrecognizedClientException", 400))
        raise UnknownAccessKey(f"no active access key {access_key_id}")
    key, _, organization = found
    return identity_of(key, organization)


@dataclass(frozen=True)
class Outcome:
    """One image's fate: ``indexed`` (with its FaceIds), ``no_face``, ``unreadable`` or
    ``denied`` (with the reason)."""

    outcome: str
    face_ids: tuple[str, ...] = ()
    unindexed: int = 0
    reason: str | None = None


@dataclass
class Tally:
    """Counts for the summary record (images unless named otherwise)."""

    seen: int = 0
    already_done: int = 0
    indexed: int = 0
    no_face: int = 0
    unreadable: int = 0
    denied: int = 0
    faces_indexed: int = 0
    batches: int = 0
    started: float = field(default_factory=time.monotonic)

    def add(self, outcome: Outcome, new_faces: int) -> None:
        setattr(self, outcome.outcome, getattr(self, outcome.outcome) + 1)
        self.faces_indexed += new_faces


class BulkIndexing:
    """One run: ``start`` decides, ``commit`` writes a batch, ``finish`` sums up."""

    def __init__(self, service: Service, policies: Policies, identity: Identity, collection_id: str,
                 run_id: str, directory: str, case_reference: str | None = None) -> None:
        self.service = service
        self.policies = policies
        self.identity = identity
        self.collection_id = collection_id
        self.run_id = run_id
        self.directory = directory
        self.case_reference = case_reference
        self.scope = Scope(identity.organization)
        self.tally = Tally()
        self._allowed: PolicyDecision | None = None

    def start(self) -> CollectionRecord:
        """Decide for the run and return the collection. In a consent collection the run is
        decided as if its images named live consents (each image is decided again at its
        commit); a key denied even then can index nothing, so the run stops here. Either
        way a refusal is recorded before it is raised."""
        with self.service.store.reader() as tx:
            collection = tx.get_collection(self.identity.organization, self.collection_id)
            tags = tx.get_tags(collection.pk) if collection else {}
        decision = self._decide(collection, tags, consent_required(tags))
        if not decision.allowed:
            with self.service.store.transaction() as tx:
                audit.append(tx, self._record(decision, 400, "AccessDeniedException", {"directory": self.directory}))
            raise exceptions.AccessDeniedException(decision.explain())
        self._allowed = decision
        try:
            with self.service.store.reader() as tx:
                found = require_collection(tx, self.scope, self.collection_id)
            self.service.engine_for(found)  # a model this installation lacks fails now, not per image
        except exceptions.RekognitionError as exc:
            self.finish(exc)
            raise
        return found

    def commit(self, images: list[tuple[str, AnalysedImage]]) -> list[Outcome]:
        """Write one batch of analysed images, each as ``(ExternalImageId, analysis)``, in one
        transaction with its audit record. An image whose bytes and ExternalImageId are
        already in the collection (indexed by a run that was killed before its report was
        written, or over the wire) gets the faces stored then, as IndexFaces does."""
        outcomes: list[Outcome] = []
        with self.service.store.transaction() as tx:
            collection = require_collection(tx, self.scope, self.collection_id)
            self._require_active_key(tx)
            tags = tx.get_tags(collection.pk)
            decisions: dict[bool, PolicyDecision] = {}
            inserted: list[FaceRecord] = []
            denied: list[str] = []
            for external_id, image in images:
                if image.error is not None:
                    outcomes.append(Outcome(UNREADABLE, reason=image.error))
                    continue
                if not image.faces:
                    outcomes.append(Outcome(NO_FACE, unindexed=len(image.unindexed)))
                    continue
                consent_valid = consent_required(tags) and live_consent(tx, self.identity.organization, external_id)
                if consent_valid not in decisions:
                    decisions[consent_valid] = self._decide(collection, tags, consent_valid, external_id)
                decision = decisions[consent_valid]
                if not decision.allowed:
                    denied.append(external_id)
                    outcomes.append(Outcome(DENIED, reason=decision.explain()))
                    continue
                already = tx.faces_by_fingerprint(collection.pk, image.fingerprint, external_id)
                records = already or face_records(collection, image, external_id, collection.face_model_version, time.time())
                if not already:
                    inserted += records
                outcomes.append(Outcome(INDEXED, tuple(r.face_id for r in records), len(image.unindexed)))
            tx.insert_faces(inserted)
            batch = self.tally.batches + 1
            if inserted:
                summary = {"batch": batch, "faces_indexed": len(inserted),
                           "face_ids": [r.face_id for r in inserted],
                           "external_image_ids": list(dict.fromkeys(r.external_image_id for r in inserted))}
                allowed = next(d for d in decisions.values() if d.allowed)
                audit.append(tx, self._record(allowed, 200, None, summary))
            if denied:
                refusal = next(d for d in decisions.values() if not d.allowed)
                summary = {"batch": batch, "images": len(denied), "external_image_ids": denied}
                audit.append(tx, self._record(refusal, 400, "AccessDeniedException", summary))
        self.tally.batches = batch
        new = {r.face_id for r in inserted}
        for outcome in outcomes:
            self.tally.add(outcome, sum(1 for f in outcome.face_ids if f in new))
        return outcomes

    def finish(self, error: BaseException | None = None, interrupted: bool = False) -> dict[str, Any]:
        """The run's summary record: what it saw and did, how long it took (seconds), and
        how it ended (an error as the client-facing type, or interrupted)."""
        t = self.tally
        summary: dict[str, Any] = {
            "directory": self.directory, "images_seen": t.seen, "already_done": t.already_done, "indexed": t.indexed,
            "no_face": t.no_face, "unreadable": t.unreadable, "denied": t.denied, "faces_indexed": t.faces_indexed,
            "batches": t.batches, "seconds": round(time.monotonic() - t.started, 3), "interrupted": interrupted,
        }
        status, error_type = 200, None
        if isinstance(error, exceptions.RekognitionError):
            status, error_type = error.status, error.code
        elif error is not None:
            status, error_type = 500, "InternalServerError"
        assert self._allowed is not None, "finish() follows a start() that allowed the run"
        with self.service.store.transaction() as tx:
            return audit.append(tx, self._record(self._allowed, status, error_type, summary))

    def _require_active_key(self, tx: Transaction) -> None:
        found = tx.access_key_secret(self.identity.access_key_id)
        if found is None or found[0].revoked_at is not None:
            raise exceptions.AccessDeniedException(f"the access key {self.identity.access_key_id} was revoked during the run")

    def _decide(self, collection: CollectionRecord | None, tags: dict[str, str], consent_valid: bool,
                external_id: str | None = None) -> PolicyDecision:
        """The decision the gate would make for IndexFaces on this collection (another
        organisation's, or none, is a placeholder with the caller as owner, as in the gate)."""
        resource = collection or CollectionRecord(-1, self.identity.organization, self.collection_id, "", "", 0.0)
        params = {"CollectionId": self.collection_id, **({"ExternalImageId": external_id} if external_id else {})}
        return self.policies.decide(self.identity, ACTION, resource, tags, params, self.case_reference, consent_valid)

    def _record(self, decision: PolicyDecision, status: int, error_type: str | None, summary: dict[str, Any]) -> dict[str, Any]:
        identity = self.identity
        return {
            "time": time.time(), "request_id": self.run_id, "key_id": identity.access_key_id,
            "organization": identity.organization, "sector": identity.sector, "purpose": identity.purpose,
            "operation": OPERATION, "collection": self.collection_id, "case_reference": self.case_reference,
            "threshold": None, "decision": "allow" if decision.allowed else "deny",
            "policies": [str(p) for p in decision.policies], "status": status, "error_type": error_type, "summary": summary,
        }
