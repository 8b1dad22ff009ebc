"""The ASGI application: AWS JSON 1.1 in, AWS JSON 1.1 out, nothing else.

Order per request: size cap, authentication (SigV4, which must cover the operation, the
body and the case reference), operation lookup, validation against botocore's model,
then the injected handler (governance around the service). Only reading the body happens on
the event loop; the rest runs in one worker thread, since authentication reads the database
and face analysis is CPU-bound. Every response carries ``x-amzn-RequestId``, including the
AWS-shaped 404 and 405 for other paths and methods. Only an unexpected exception becomes
a 500, and it is logged.

The handler's gate audits every request it is given. Every request refused before that
(and a 500 outside it) is reported to ``on_rejection``, the governance rejection log,
before its response is sent: client claims only, never the body. ``/health`` is neither.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan

from facegate.api import sigv4
from facegate.api.exceptions import UnknownOperationException
from facegate.api.service_model import TARGET_PREFIX, operation_model
from facegate.api.validation import parse_body, validate
from facegate.api.wire import error_response, json_response
from facegate.governance.rejections import Rejection
from facegate.service.exceptions import InternalServerError, InvalidParameterException, RekognitionError

log = logging.getLogger("facegate.api")

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A 5 MB image is about 7 MB as base64; anything larger cannot be a valid request."""
CASE_REFERENCE_HEADER = "x-facegate-case-ref"
_CASE_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:/#-]{0,127}")
"""1 to 128 characters: what a case number needs, and nothing that could spoof a log line."""
_INTERNAL_ERROR = "Internal server error; see the server log."


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    case_reference: str | None
    source: str | None
    """The client's address, for the rejection log."""


Handler = Callable[[sigv4.Caller[Any], str, dict[str, Any], RequestContext], dict[str, Any]]
"""Runs an authenticated, validated request through the gate, which audits it (allowed,
denied or failed): an exception it raises is already on record."""
Reject = Callable[[Rejection], None]


@dataclass(frozen=True)
class _Claim:
    """Who the client says it is and what it asks for, before anything is verified."""

    source: str | None
    key_id: str | None
    operation: str | None

    @classmethod
    def of(cls, request: Request) -> "_Claim":
        target = request.headers.get("x-amz-target")
        operation = target.removeprefix(f"{TARGET_PREFIX}.")[:64] if target else None
        key_id = sigv4.claimed_access_key(request.headers.get("authorization"))
        return cls(request.client.host if request.client else None, key_id, operation or None)


async def _body(request: Request) -> bytes:
    """The request body, refused as soon as it is over ``MAX_BODY_BYTES``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise InvalidParameterException(f"Request body is over {MAX_BODY_BYTES} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise InvalidParameterException(f"Request body is over {MAX_BODY_BYTES} bytes.")
    return bytes(body)


def create_app(
    handler: Handler,
    key_for: Callable[[str], sigv4.Key | None],
    on_rejection: Reject | None = None,
    lifespan: Lifespan[Starlette] | None = None,
    mounts: Sequence[BaseRoute] = (),
) -> Starlette:
    """``key_for``: the access key id's secret and holder, or None if it may not sign
    (``sigv4.verify``); the handler gets what it returned on its ``Caller``.
    ``on_rejection`` None records nothing (a test of the wire alone). ``mounts`` are other
    front doors under their own paths (the console at ``/console``): not Rekognition requests."""

    def rejected(
        request: Request, request_id: str, error: RekognitionError, status: int | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        """The error response, once the rejection log has the request (it writes: call this
        in a worker thread)."""
        claim, status = _Claim.of(request), status or error.status
        if on_rejection is not None:
            rejection = Rejection(request_id, claim.source, claim.key_id, claim.operation, error.code, status)
            try:
                on_rejection(rejection)
            except Exception:  # the client is refused either way; the operator must hear of it
                log.exception("request %s: could not record its rejection (%s)", request_id, error.code)
        response = error_response(error.code, error.message, status, request_id)
        response.headers.update(headers or {})
        return response

    async def rekognition(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            body = await _body(request)
        except RekognitionError as exc:
            return await run_in_threadpool(rejected, request, request_id, exc)
        except Exception:
            log.exception("request %s failed before the gate", request_id)
            return await run_in_threadpool(rejected, request, request_id, InternalServerError(_INTERNAL_ERROR))
        return await run_in_threadpool(answer, request, request_id, body)

    def answer(request: Request, request_id: str, body: bytes) -> Response:
        """Everything after the body is read, in one worker thread: SigV4's key lookup reads
        the database, and face analysis is CPU-bound, so neither holds up the event loop."""
        try:
            caller, name, params, context = _admit(request, request_id, body)
        except RekognitionError as exc:
            return rejected(request, request_id, exc)
        except Exception:
            log.exception("request %s failed before the gate", request_id)
            return rejected(request, request_id, InternalServerError(_INTERNAL_ERROR))
        try:
            result = handler(caller, name, params, context)
        except RekognitionError as exc:
            return error_response(exc.code, exc.message, exc.status, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return error_response("InternalServerError", _INTERNAL_ERROR, InternalServerError.status, request_id)
        try:
            return json_response(result, request_id)
        except Exception:
            log.exception("request %s: its response could not be encoded", request_id)
            return rejected(request, request_id, InternalServerError(_INTERNAL_ERROR))

    def _admit(request: Request, request_id: str, body: bytes) -> tuple[sigv4.Caller[Any], str, dict[str, Any], RequestContext]:
        caller = sigv4.verify(
            request.method, str(request.url), request.headers.items(), body, key_for, read_headers=(CASE_REFERENCE_HEADER,)
        )
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        model = operation_model(name) if prefix == TARGET_PREFIX else None
        if model is None:
            raise UnknownOperationException(f"Unknown operation: {target[:100] or 'missing X-Amz-Target header'}")
        case_reference = request.headers.get(CASE_REFERENCE_HEADER)
        if case_reference is not None and not _CASE_REFERENCE.fullmatch(case_reference):
            raise InvalidParameterException(
                "X-Facegate-Case-Ref must be 1 to 128 characters: letters, digits, spaces and - _ . : / #, "
                "starting with a letter or digit."
            )
        params = validate(model.input_shape, parse_body(body))
        source = request.client.host if request.client else None
        return caller, name, params, RequestContext(request_id, case_reference, source)

    async def not_routed(request: Request, exc: Exception) -> Response:
        """Other paths and methods: Rekognition has one endpoint, ``POST /``."""
        assert isinstance(exc, HTTPException)
        error = UnknownOperationException(
            f"No operation at {request.method} {request.url.path[:100]}: send POST / with an X-Amz-Target header."
        )
        # 404 or 405 (with the Allow header Starlette computed), as a 4xx AWS error
        return await run_in_threadpool(rejected, request, str(uuid.uuid4()), error, exc.status_code, dict(exc.headers or {}))

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[Route("/", rekognition, methods=["POST"]), Route("/health", health, methods=["GET"]), *mounts],
        exception_handlers={HTTPException: not_routed},
        lifespan=lifespan,
    )
