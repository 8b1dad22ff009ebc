"""Policies, organisations and keys, collections: read by every role, changed only by admins.

Each change calls the governance function the CLI calls (``Policies.set_enabled``,
``create_organization``, ``create_access_key``, ``revoke_access_key``), recorded as made
by ``console:<account>``, so it is audited in the change's own transaction exactly as from
the CLI. Toggling a pack and revoking a key ask for confirmation first; a new key's secret
is shown once, on the page that answers its creation, and never stored in plain text.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from facegate.console.context import PREFIX, SECURITY_HEADERS, Console
from facegate.governance import audit_index
from facegate.governance.console_accounts import Session, actor
from facegate.governance.gate import DEFAULT_RETENTION_DAYS
from facegate.governance.identity import BUILT_IN_PURPOSES, KNOWN_FLAGS, SECTORS, IdentityError, create_organization
from facegate.governance.keys import create_access_key, revoke_access_key
from facegate.governance.policy import ALWAYS_ON, PolicyError
from facegate.service.facegate_tags import CONSENT_TAG, RETENTION_DAYS_TAG, retention_days
from facegate.store import audit_facets


def _done(path: str, message: str) -> Response:
    return RedirectResponse(f"{PREFIX}{path}?done={quote(message[:300], safe='')}", 303, headers=SECURITY_HEADERS)


def routes(console: Console) -> list[Route]:
    def policies_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        packs = console.policies.packs()
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            seqs = audit_facets.seqs_of(tx, ["facegate:PolicyEnable", "facegate:PolicyDisable", "facegate:StateBaseline"])
            changes = audit_index.checked(tx, seqs)
        last: dict[str, dict[str, Any]] = {}
        for change in changes:
            summary = change.record.get("summary") or {}
            if change.record.get("operation") == "facegate:StateBaseline":
                for name in summary.get("policy_packs", {}):
                    last[name] = change.record
            elif isinstance(summary.get("pack"), str):
                last[summary["pack"]] = change.record
        return console.render(request, "policies.html", session, packs=packs, last=last, always_on=ALWAYS_ON,
                              done=request.query_params.get("done"))

    def pack_confirm(request: Request, session: Session, _: dict[str, str]) -> Response:
        try:
            pack = console.policies.pack(request.path_params["name"])
        except KeyError as exc:
            return console.render(request, "refused.html", session, 404, error="NotFound", message=str(exc.args[0]))
        return console.render(request, "confirm_pack.html", session, pack=pack, enable=not pack.enabled)

    def pack_set(request: Request, session: Session, form: dict[str, str]) -> Response:
        name, enable = request.path_params["name"], form.get("enable") == "1"
        if form.get("confirm") != "yes":
            return console.render(request, "refused.html", session, 400, error="ConfirmationRequired",
                                  message="Confirm the change on the confirmation page; nothing was changed.")
        try:
            console.policies.set_enabled(name, enable, actor=actor(session.account))
        except PolicyError as exc:
            return console.render(request, "refused.html", session, 400, error="PolicyError", message=str(exc))
        return _done("/policies", f"{name} is now {'on' if enable else 'off'} (audited)")

    def organizations_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        with console.store.reader() as tx:
            organizations = tx.list_organizations()
            keys = tx.list_access_keys()
        audit_index.refresh(console.store)
        with console.store.reader() as tx:
            used = audit_facets.last_use(tx, [k.access_key_id for k in keys])
        purposes = {o.name: sorted({k.purpose or "" for k in keys if k.owner == o.name and k.revoked_at is None}) for o in organizations}
        return console.render(request, "organizations.html", session, organizations=organizations, keys=keys, used=used,
                              purposes=purposes, sectors=SECTORS, flags=KNOWN_FLAGS, built_in=BUILT_IN_PURPOSES,
                              done=request.query_params.get("done"), new_key=None)

    def organization_create(request: Request, session: Session, form: dict[str, str]) -> Response:
        flags = tuple(f for f in KNOWN_FLAGS if form.get(f"flag_{f}") == "on")
        try:
            create_organization(console.store, form.get("name", "").strip(), form.get("sector", ""), flags, actor=actor(session.account))
        except IdentityError as exc:
            return console.render(request, "refused.html", session, 400, error="IdentityError", message=str(exc))
        return _done("/organizations", f"organisation {form.get('name', '').strip()} created (audited)")

    def key_create(request: Request, session: Session, form: dict[str, str]) -> Response:
        owner, purpose = form.get("organization", "").strip(), form.get("purpose", "").strip()
        name = form.get("name", "").strip() or f"{owner}-{purpose}"
        try:
            key = create_access_key(console.store, console.secrets, name[:255], owner, purpose, actor=actor(session.account))
        except IdentityError as exc:
            return console.render(request, "refused.html", session, 400, error="IdentityError", message=str(exc))
        return console.render(request, "key_created.html", session, key=key, owner=owner, purpose=purpose, name=name)

    def key_confirm(request: Request, session: Session, _: dict[str, str]) -> Response:
        return console.render(request, "confirm_revoke.html", session, key_id=request.path_params["key_id"])

    def key_revoke(request: Request, session: Session, form: dict[str, str]) -> Response:
        key_id = request.path_params["key_id"]
        if form.get("confirm") != "yes":
            return console.render(request, "refused.html", session, 400, error="ConfirmationRequired",
                                  message="Confirm the revocation on the confirmation page; nothing was changed.")
        try:
            revoke_access_key(console.store, key_id, actor=actor(session.account))
        except IdentityError as exc:
            return console.render(request, "refused.html", session, 400, error="IdentityError", message=str(exc))
        return _done("/organizations", f"key {key_id} revoked (audited)")

    def collections_page(request: Request, session: Session, _: dict[str, str]) -> Response:
        with console.store.reader() as tx:
            rows = [_collection_row(tx, c) for c in tx.all_collections()]
        return console.render(request, "collections.html", session, collections=rows)

    return [
        Route("/policies", console.page("auditor", policies_page)),
        Route("/policies/{name:str}/confirm", console.page("admin", pack_confirm)),
        Route("/policies/{name:str}", console.page("admin", pack_set), methods=["POST"]),
        Route("/organizations", console.page("auditor", organizations_page)),
        Route("/organizations", console.page("admin", organization_create), methods=["POST"]),
        Route("/keys", console.page("admin", key_create), methods=["POST"]),
        Route("/keys/{key_id:str}/confirm", console.page("admin", key_confirm)),
        Route("/keys/{key_id:str}/revoke", console.page("admin", key_revoke), methods=["POST"]),
        Route("/collections", console.page("auditor", collections_page)),
    ]


def _collection_row(tx: Any, collection: Any) -> dict[str, Any]:
    """Counts, tags and when the retention sweep will next delete one of its faces."""
    tags = tx.get_tags(collection.pk)
    days = retention_days(tags.get(RETENTION_DAYS_TAG, "")) or DEFAULT_RETENTION_DAYS
    oldest = tx.face_ids_created_before(collection.pk, math.inf, 1)
    created = tx.get_faces(collection.pk, oldest)[oldest[0]].created_at if oldest else None
    return {
        "collection": collection, "faces": tx.count_faces(collection.pk), "users": tx.count_users(collection.pk),
        "retention_days": days, "consent": tags.get(CONSENT_TAG), "tags": tags,
        "next_deletion": None if created is None else created + days * 86_400,
    }
