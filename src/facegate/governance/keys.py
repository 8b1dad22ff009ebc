"""Access keys: the caller identities that SigV4 authenticates.

An access key id looks like AWS's (``AKIA`` + 16 characters) so existing tooling accepts
it. The secret is shown once, at creation, and stored only encrypted. Lookups hit the
database on every request, so a revoked key stops working immediately.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass, field

from facegate.governance import audit
from facegate.governance.identity import (
    DEFAULT_ORGANIZATION,
    DEFAULT_PURPOSE,
    Identity,
    IdentityError,
    ensure_organization,
    identity_of,
)
from facegate.store.database import Store
from facegate.store.secrets import SecretBox

_ID_ALPHABET = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class NewAccessKey:
    access_key_id: str
    secret_access_key: str


def create_access_key(
    store: Store, box: SecretBox, name: str, owner: str = DEFAULT_ORGANIZATION, purpose: str = DEFAULT_PURPOSE,
    actor: str = audit.ADMINISTRATOR,
) -> NewAccessKey:
    """A key bound to exactly one organisation and one declared purpose, audited (never
    its secret) in the same transaction."""
    if not purpose or not purpose.replace("_", "").replace("-", "").isalnum():
        raise IdentityError(f"purpose must be a word like photo_library, got {purpose!r}")
    key = NewAccessKey(
        access_key_id="AKIA" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(16)),
        secret_access_key=secrets.token_urlsafe(30)[:40],
    )
    with store.transaction() as tx:
        ensure_organization(tx, owner, actor)
        tx.create_access_key(key.access_key_id, name, box.encrypt(key.secret_access_key), owner, purpose)
        summary = {"access_key_id": key.access_key_id, "organization": owner, "purpose": purpose, "name": name}
        audit.append(tx, audit.administrative("facegate:AccessKeyCreate", summary, actor, organization=owner))
    return key


def revoke_access_key(store: Store, access_key_id: str, actor: str = audit.ADMINISTRATOR) -> None:
    """Revoke a key, audited in the same transaction; it stops working at its next request."""
    with store.transaction() as tx:
        found = tx.access_key_secret(access_key_id)
        if found is None or not tx.revoke_access_key(access_key_id):
            raise IdentityError(f"no active key {access_key_id}")
        summary = {"access_key_id": access_key_id}
        audit.append(tx, audit.administrative("facegate:AccessKeyRevoke", summary, actor, organization=found[0].owner))


@dataclass(frozen=True)
class SigningKey:
    """An active key as SigV4 checks it (its secret) and as the gate knows it (its identity)."""

    secret_access_key: str = field(repr=False)  # it rides on every request's Caller: never into a log line
    identity: Identity


def key_lookup(store: Store, box: SecretBox) -> Callable[[str], SigningKey | None]:
    """``access key id -> SigningKey`` for SigV4; None for unknown or revoked keys.

    The key's row and its organisation's are read on every request, in one query, so a
    revocation, or a change of the organisation's sector or flags, counts from the very next
    request. The secret is decrypted each time too (about 13 us): no plaintext secret outlives
    the request that needed it.
    """

    def key_for(access_key_id: str) -> SigningKey | None:
        with store.reader() as tx:
            found = tx.access_key_with_owner(access_key_id)
        if found is None or found[0].revoked_at is not None:
            return None
        key, ciphertext, organization = found
        return SigningKey(box.decrypt(ciphertext), identity_of(key, organization))

    return key_for
