"""What every console page shares: the store, the templates, the session check and the
rules every request passes before a page runs.

``Console.page`` wraps a page's function: a GET without a session goes to the login page; a
POST without one (401), without the session's CSRF token (403), or from a role without the
right (403) is refused and sent to the rejection log (aggregated, as refused API requests are); then the page runs in a worker
thread, since it reads the database. The check is on the server: hiding a button is only
courtesy. Pages never write state themselves: every change goes through the governance
function the CLI calls, which audits it in the change's own transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from facegate.console.auth import CSRF_FIELD, BadForm, Cookies, csrf_matches, form
from facegate.console.chain import ChainWatch
from facegate.governance import console_accounts
from facegate.governance.console_accounts import Session
from facegate.governance.policy import Policies
from facegate.governance.rejections import Rejection
from facegate.store.database import Store
from facegate.store.secrets import SecretBox

log = logging.getLogger("facegate.console")

PREFIX = "/console"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}

Page = Callable[[Request, Session, dict[str, str]], Response]
"""A page: the request, the session and the submitted form (empty for GET)."""


def utc(when: Any) -> str:
    """Epoch seconds as ``2026-11-28 09:32:34Z``; anything else as it is."""
    try:
        return dt.datetime.fromtimestamp(float(when), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return "-" if when is None else str(when)


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


@dataclass
class Console:
    store: Store
    secrets: SecretBox
    policies: Policies
    cookies: Cookies
    reject: Callable[[Rejection], None]
    reports_dir: Path
    chain: ChainWatch
    templates: Environment = field(init=False)

    def __post_init__(self) -> None:
        self.templates = Environment(loader=PackageLoader("facegate.console", "templates"),
                                     autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(utc=utc, age=age, percent=percent)

    def render(self, request: Request, template: str, session: Session | None, status: int = 200, **values: Any) -> HTMLResponse:
        text = self.templates.get_template(template).render(
            session=session, csrf_field=CSRF_FIELD, prefix=PREFIX, path=request.url.path, **values)
        return HTMLResponse(text, status, headers=SECURITY_HEADERS)

    def refuse(self, request: Request, session: Session | None, status: int, error: str, message: str) -> HTMLResponse:
        """A refused console request: recorded in the rejection log, answered with ``status``."""
        claimed = console_accounts.actor(session.account) if session else None
        operation = f"console:{request.method} {request.url.path}"[:64]
        self.reject(Rejection(str(uuid.uuid4()), _source(request), claimed, operation, error, status))
        return self.render(request, "refused.html", session, status, error=error, message=message)

    def page(self, role: str, handler: Page) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            token = self.cookies.session_token(request)
            session = await run_in_threadpool(console_accounts.current, self.store, token) if token else None
            if session is None:
                if request.method == "GET":
                    return RedirectResponse(f"{PREFIX}/login?next={request.url.path}", 303)
                return self.refuse(request, None, 401, "ConsoleLoginRequired", "Your session has ended: log in again.")
            submitted: dict[str, str] = {}
            if request.method == "POST":
                try:
                    submitted = await form(request)
                except BadForm as exc:
                    return self.refuse(request, session, 400, "ConsoleBadForm", str(exc))
                if not csrf_matches(session.csrf_token, submitted.get(CSRF_FIELD)):
                    return self.refuse(request, session, 403, "ConsoleCsrfRefused",
                                       "This form's CSRF token is missing or wrong: nothing was changed. Reload the page and try again.")
            if not session.may(role):
                return self.refuse(request, session, 403, "ConsoleAccessDenied",
                                   f"This needs the {role} role; your account ({session.account}) is {session.role}. Nothing was changed.")
            return await run_in_threadpool(handler, request, session, submitted)

        return endpoint


def _source(request: Request) -> str | None:
    return request.client.host if request.client else None


def source(request: Request) -> str:
    """The client's address, as recorded for logins."""
    return _source(request) or "unknown"
