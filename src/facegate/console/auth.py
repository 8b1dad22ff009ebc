"""The console's cookie, CSRF and role checks: the server-side half of every permission.

The session cookie carries a random token signed with ``console.key`` (created in the data
directory beside ``master.key``: mode 0600, never overwritten); the database keeps only its
digest (``governance/console_accounts.py``). The cookie is HttpOnly, SameSite=Strict, scoped
to ``/console``, and Secure when the request came over HTTPS. Every POST carries the
session's CSRF token in a form field; the login form, before there is a session, carries a
token that must equal a second signed cookie's (double submit).
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl

from itsdangerous import BadSignature, Signer
from starlette.requests import Request
from starlette.responses import Response

from facegate.governance.console_accounts import SESSION_MAX_SECONDS

SESSION_COOKIE = "facegate_console"
LOGIN_COOKIE = "facegate_console_login"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/console"
SECRET_FILE = "console.key"
MAX_FORM_BYTES = 64 * 1024


def secret_for_data_dir(data_dir: Path) -> bytes:
    """The data directory's cookie-signing key, created on first use (mode 0600). It is
    written to a private file first and linked into place, so workers starting together
    either make it or read the whole of it, never a half-written key."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        draft = data_dir / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_urlsafe(48).encode())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another worker's key is in place: use it
        finally:
            draft.unlink()
    return path.read_bytes().strip()


class Cookies:
    """Signs and reads the console's two cookies."""

    def __init__(self, secret: bytes) -> None:
        self._session = Signer(secret, salt="facegate-console-session")
        self._login = Signer(secret, salt="facegate-console-login")

    def session_token(self, request: Request) -> str | None:
        return _unsigned(self._session, request.cookies.get(SESSION_COOKIE))

    def set_session(self, response: Response, request: Request, token: str) -> None:
        _set(response, request, SESSION_COOKIE, self._session.sign(token).decode(), SESSION_MAX_SECONDS)

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")

    def set_login_token(self, response: Response, request: Request, token: str) -> None:
        """The login form's token (``secrets.token_urlsafe``) as a cookie, to be submitted back."""
        _set(response, request, LOGIN_COOKIE, self._login.sign(token).decode(), 3600)

    def login_token_matches(self, request: Request, submitted: str | None) -> bool:
        expected = _unsigned(self._login, request.cookies.get(LOGIN_COOKIE))
        return expected is not None and submitted is not None and hmac.compare_digest(expected, submitted)


def _unsigned(signer: Signer, value: str | None) -> str | None:
    if not value:
        return None
    try:
        return signer.unsign(value).decode()
    except BadSignature:
        return None


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=COOKIE_PATH, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def csrf_matches(expected: str, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(expected, submitted)


class BadForm(ValueError):
    """A form body that is too large or not URL-encoded UTF-8 (answered 400)."""


async def form(request: Request) -> dict[str, str]:
    """A URL-encoded form body (at most ``MAX_FORM_BYTES``); a repeated field keeps its last value."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM_BYTES:
            raise BadForm(f"a console form is at most {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=1000))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm("the form is not URL-encoded UTF-8") from exc
