"""The ``facegate:*`` collection tags whose values facegate itself acts on, checked where
they are written (CreateCollection, TagResource) so a typo is an error, not a silent no-op.

``facegate:retention-days`` bounds how long a face may stay: a whole number of days from 1
to ``MAX_RETENTION_DAYS``, in ASCII digits. ``facegate:consent`` may only be ``required``
(remove the tag to require none). Other tags, ``facegate:*`` included, are free text that
custom policy packs may read.
"""

from __future__ import annotations

import re

from facegate.service import exceptions

RETENTION_DAYS_TAG = "facegate:retention-days"
CONSENT_TAG = "facegate:consent"
CONSENT_VALUES = ("required",)

MAX_RETENTION_DAYS = 36_500
"""A hundred years: longer than any retention law asks for (BIPA's is three years), so a
larger figure is a typo, and ``days * 86400`` stays an exact count of seconds."""


def retention_days(value: str) -> int | None:
    """The days a ``facegate:retention-days`` value means, or None if it is not valid."""
    if re.fullmatch(r"[0-9]{1,12}", value) is None:  # not \d: that accepts any script's digits
        return None
    days = int(value)
    return days if 1 <= days <= MAX_RETENTION_DAYS else None


def check_facegate_tags(tags: dict[str, str]) -> None:
    """Raise ``InvalidParameterException`` naming the first tag whose value facegate cannot act on."""
    if RETENTION_DAYS_TAG in tags and retention_days(tags[RETENTION_DAYS_TAG]) is None:
        raise exceptions.InvalidParameterException(
            f"{RETENTION_DAYS_TAG} must be a whole number of days from 1 to {MAX_RETENTION_DAYS}, "
            f"written in ASCII digits; got {tags[RETENTION_DAYS_TAG]!r}."
        )
    if CONSENT_TAG in tags and tags[CONSENT_TAG] not in CONSENT_VALUES:
        raise exceptions.InvalidParameterException(
            f"{CONSENT_TAG} must be 'required' (untag the collection to require no consent); got {tags[CONSENT_TAG]!r}."
        )
