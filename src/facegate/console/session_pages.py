"""Logging in and out. A failed login is audited by ``console_accounts.log_in``; one refused
by the rate limit goes to the rejection log, which aggregates a flood into counts."""

from __future__ import annotations

import secrets
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from facegate.console.auth import CSRF_FIELD, BadForm, csrf_matches, form
from facegate.console.context import PREFIX, SECURITY_HEADERS, Console, source
from facegate.governance import console_accounts
from facegate.governance.console_accounts import LoginRefused, Session
from facegate.governance.rejections import Rejection


def _safe_next(value: str | None) -> str:
    """Only a console path: never another site (``//host``) or scheme."""
    if value and value.startswith(f"{PREFIX}/") and not value.startswith("//") and "\\" not in value and "://" not in value:
        return value
    return f"{PREFIX}/"


def routes(console: Console) -> list[Route]:
    async def login_form(request: Request, message: str | None = None, status: int = 200, after: str | None = None) -> Response:
        token = secrets.token_urlsafe(32)
        response = console.render(request, "login.html", None, status, message=message,
                                  next=_safe_next(after or request.query_params.get("next")), login_token=token)
        console.cookies.set_login_token(response, request, token)
        return response

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return await login_form(request)
        try:
            submitted = await form(request)
        except BadForm as exc:
            return await login_form(request, str(exc), 400)
        if not console.cookies.login_token_matches(request, submitted.get(CSRF_FIELD)):
            console.reject(Rejection(str(uuid.uuid4()), source(request), None, "facegate:ConsoleLogin", "ConsoleCsrfRefused", 403))
            return await login_form(request, "The login form expired or did not come from this console: try again.", 403,
                                    submitted.get("next"))
        name, password = submitted.get("account", ""), submitted.get("password", "")
        try:
            session: Session = await run_in_threadpool(console_accounts.log_in, console.store, name, password, source(request))
        except LoginRefused as exc:
            if exc.throttled:
                console.reject(Rejection(str(uuid.uuid4()), source(request), console_accounts.actor(name[:64]),
                                         "facegate:ConsoleLogin", "ConsoleLoginThrottled", 429))
            return await login_form(request, str(exc), 429 if exc.throttled else 401, submitted.get("next"))
        response = RedirectResponse(_safe_next(submitted.get("next")), 303, headers=SECURITY_HEADERS)
        console.cookies.set_session(response, request, session.token)
        return response

    async def logout(request: Request) -> Response:
        token = console.cookies.session_token(request)
        session = await run_in_threadpool(console_accounts.current, console.store, token) if token else None
        if session is not None:
            try:
                submitted = await form(request)
            except BadForm:
                submitted = {}
            if not csrf_matches(session.csrf_token, submitted.get(CSRF_FIELD)):
                return console.refuse(request, session, 403, "ConsoleCsrfRefused", "The logout form's CSRF token is wrong.")
            await run_in_threadpool(console_accounts.log_out, console.store, token)
        response = RedirectResponse(f"{PREFIX}/login", 303, headers=SECURITY_HEADERS)
        console.cookies.clear_session(response)
        return response

    return [Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"])]
