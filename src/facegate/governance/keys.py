"""Access keys: the caller identities that SigV4 authenticates.

An access key id looks like AWS's (``AKIA`` + 16 characters) so existing tooling accepts
it. The secret is shown once, at creation, and stored only encrypted. Lookups hit the
database on every request, so a revoked key stops working immediately.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from facegate.store.database import Store
from facegate.store.secrets import SecretBox

DEFAULT_OWNER = "default"
_ID_ALPHABET = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class NewAccessKey:
    access_key_id: str
    secret_access_key: str


def create_access_key(store: Store, box: SecretBox, name: str, owner: str = DEFAULT_OWNER) -> NewAccessKey:
    key = NewAccessKey(
        access_key_id="AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16)),
        secret_access_key=secrets.token_urlsafe(30)[:40],
    )
    with store.transaction() as tx:
        tx.create_access_key(key.access_key_id, name, box.encrypt(key.secret_access_key), owner)
    return key


def secret_lookup(store: Store, box: SecretBox) -> Callable[[str], str | None]:
    """``access key id -> secret`` for SigV4; None for unknown or revoked keys."""

    def secret_for(access_key_id: str) -> str | None:
        with store.reader() as tx:
            found = tx.access_key_secret(access_key_id)
        if found is None or found[0].revoked_at is not None:
            return None
        return box.decrypt(found[1])

    return secret_for


def owner_lookup(store: Store) -> Callable[[str], str]:
    def owner_of(access_key_id: str) -> str:
        with store.reader() as tx:
            found = tx.access_key_secret(access_key_id)
        return found[0].owner if found else DEFAULT_OWNER

    return owner_of
