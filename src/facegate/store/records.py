"""Plain, immutable records the store hands to the service layer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CollectionRecord:
    pk: int
    owner: str
    collection_id: str
    arn: str
    face_model_version: str
    created_at: float


@dataclass(frozen=True)
class FaceRecord:
    """A stored face. The box is Rekognition's: ratios of the image width and height."""

    face_id: str
    collection_pk: int
    image_id: str
    external_image_id: str | None
    user_id: str | None
    box: tuple[float, float, float, float]  # left, top, width, height
    confidence: float
    embedding: np.ndarray
    model_version: str
    image_fingerprint: str
    created_at: float


@dataclass(frozen=True)
class FaceSummary:
    """A stored face as an answer shows it (Rekognition's ``Face``): a ``FaceRecord`` less its
    descriptor and bookkeeping, read for every match a search returns (up to 4,096), where
    the 512-B descriptor would be most of the bytes read."""

    face_id: str
    image_id: str
    external_image_id: str | None
    user_id: str | None
    box: tuple[float, float, float, float]  # left, top, width, height
    confidence: float
    model_version: str


@dataclass(frozen=True)
class UserRecord:
    collection_pk: int
    user_id: str
    created_at: float


@dataclass(frozen=True)
class AccessKeyRecord:
    access_key_id: str
    name: str
    owner: str
    created_at: float
    revoked_at: float | None
    purpose: str | None


@dataclass(frozen=True)
class OrganizationRecord:
    name: str
    sector: str
    flags: tuple[str, ...]
    created_at: float


@dataclass(frozen=True)
class AuditRow:
    """One stored audit record: its canonical JSON text, the hash that chains it, and the
    columns copied from it (see ``store/audit_chain.py``)."""

    seq: int
    record: str
    hash: str
    recorded_at: float
    organization: str | None
    operation: str


@dataclass(frozen=True)
class ConsentRecord:
    organization: str
    consent_id: str
    subject: str
    expires_at: float
    revoked_at: float | None
