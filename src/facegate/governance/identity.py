"""Who is asking: an access key bound to one organisation (with a sector) and one purpose.

Purposes are what policies reason about. The built-in ones are listed here; any other
name is allowed and is simply unknown to the shipped packs (so, for instance, it cannot
run 1:N identification until a pack of yours permits it).
"""

from __future__ import annotations

from dataclasses import dataclass

from facegate.governance import audit
from facegate.store.database import Store
from facegate.store.records import AccessKeyRecord, OrganizationRecord
from facegate.store.transaction import Transaction

SECTORS = ("law_enforcement", "government", "ngo", "commercial", "research", "individual")
BUILT_IN_PURPOSES = (
    "missing_children",
    "trafficking_victims",
    "access_control",
    "identity_verification",
    "photo_library",
    "criminal_investigation",
    "research",
)
KNOWN_FLAGS = ("approved_child_safety",)

DEFAULT_ORGANIZATION = "default"
DEFAULT_SECTOR = "commercial"
DEFAULT_PURPOSE = "photo_library"


class IdentityError(ValueError):
    """A request to create or use an identity that does not make sense."""


@dataclass(frozen=True)
class Identity:
    access_key_id: str
    organization: str
    sector: str
    purpose: str
    flags: tuple[str, ...]


LOCAL_OPERATOR = Identity("local-cli", "local", "individual", "research", ())
"""Who the ``facegate detect`` and ``compare`` commands act as: they pass the gate too."""


def create_organization(
    store: Store, name: str, sector: str, flags: tuple[str, ...] = (), actor: str = audit.ADMINISTRATOR
) -> None:
    """Create an organisation, audited in the same transaction."""
    if sector not in SECTORS:
        raise IdentityError(f"unknown sector {sector!r}; choose one of {', '.join(SECTORS)}")
    with store.transaction() as tx:
        if tx.get_organization(name) is not None:
            raise IdentityError(f"organisation {name!r} already exists")
        _create(tx, name, sector, flags, actor)


def _create(tx: Transaction, name: str, sector: str, flags: tuple[str, ...], actor: str) -> None:
    tx.create_organization(name, sector, flags)
    summary = {"name": name, "sector": sector, "flags": sorted(flags)}
    audit.append(tx, audit.administrative("facegate:OrganizationCreate", summary, actor, organization=name))


def ensure_organization(tx: Transaction, name: str, actor: str = audit.ADMINISTRATOR) -> None:
    """The default organisation exists implicitly (created, and audited, on first use);
    any other must be created first."""
    if tx.get_organization(name) is None:
        if name != DEFAULT_ORGANIZATION:
            raise IdentityError(f"no organisation {name!r}; create it with `facegate orgs create`")
        _create(tx, name, DEFAULT_SECTOR, (), actor)


def resolve(store: Store, access_key_id: str) -> Identity:
    """The identity behind a key, for front doors that do not sign requests (the server
    takes it from the very lookup SigV4 made: ``keys.key_lookup``)."""
    with store.reader() as tx:
        found = tx.access_key_with_owner(access_key_id)
    if found is None:
        raise IdentityError(f"unknown access key {access_key_id}")
    key, _, organization = found
    return identity_of(key, organization)


def identity_of(key: AccessKeyRecord, organization: OrganizationRecord | None) -> Identity:
    """A key's identity, from its row and its organisation's (the default sector if that is missing)."""
    sector = organization.sector if organization else DEFAULT_SECTOR
    flags = organization.flags if organization else ()
    return Identity(key.access_key_id, key.owner, sector, key.purpose or DEFAULT_PURPOSE, flags)
