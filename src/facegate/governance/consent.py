"""Whether a face may be enrolled under a consent (BIPA, GDPR Art. 9): the one rule the gate and
bulk enrolment and the policy packs' context all ask, so they cannot disagree."""

from __future__ import annotations

import time

from facegate.service.facegate_tags import CONSENT_TAG
from facegate.store.transaction import Transaction


def consent_required(tags: dict[str, str]) -> bool:
    """A collection tagged ``facegate:consent=required`` takes a face only with a live consent."""
    return tags.get(CONSENT_TAG) == "required"


def live_consent(tx: Transaction, organization: str, consent_id: str) -> bool:
    """The consent exists, is not revoked and has not expired: what the packs' consent rules ask."""
    consent = tx.get_consent(organization, consent_id)
    return consent is not None and consent.revoked_at is None and consent.expires_at > time.time()
