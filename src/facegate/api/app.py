"""The ASGI application: AWS JSON 1.1 in, AWS JSON 1.1 out, nothing else.

Order per request: size cap, authentication (SigV4), operation lookup, validation
against botocore's model, then the injected handler (governance around the service) in
a worker thread, since face analysis is CPU-bound. Every response carries
``x-amzn-RequestId``. Only an unexpected exception becomes a 500, and it is logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from facegate.api import sigv4
from facegate.api.exceptions import UnknownOperationException
from facegate.api.service_model import TARGET_PREFIX, operation_model
from facegate.api.validation import parse_body, validate
from facegate.api.wire import error_response, json_response
from facegate.service.exceptions import InvalidParameterException, RekognitionError

log = logging.getLogger("facegate.api")

MAX_BODY_BYTES = 8 * 1024 * 1024
"""A 5 MB image is about 7 MB as base64; anything larger cannot be a valid request."""


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    case_reference: str | None


Handler = Callable[[sigv4.Caller, str, dict[str, Any], RequestContext], dict[str, Any]]


def create_app(handler: Handler, secret_for: Callable[[str], str | None]) -> Starlette:
    async def rekognition(request: Request) -> Response:
        request_id = str(uuid.uuid4())
        try:
            result = await _handle(request, request_id)
        except RekognitionError as exc:
            return error_response(exc.code, exc.message, exc.status, request_id)
        except Exception:
            log.exception("request %s failed", request_id)
            return error_response("InternalServerError", "Internal server error; see the server log.", 500, request_id)
        return json_response(result, request_id)

    async def _handle(request: Request, request_id: str) -> dict[str, Any]:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            raise InvalidParameterException(f"Request body is over {MAX_BODY_BYTES} bytes.")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                raise InvalidParameterException(f"Request body is over {MAX_BODY_BYTES} bytes.")
        caller = sigv4.verify(request.method, str(request.url), request.headers, bytes(body), secret_for)
        target = request.headers.get("x-amz-target", "")
        prefix, _, name = target.partition(".")
        model = operation_model(name) if prefix == TARGET_PREFIX else None
        if model is None:
            raise UnknownOperationException(f"Unknown operation: {target or 'missing X-Amz-Target header'}")
        params = validate(model.input_shape, parse_body(bytes(body)))
        context = RequestContext(request_id, request.headers.get("x-facegate-case-ref"))
        return await run_in_threadpool(handler, caller, name, params, context)

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/", rekognition, methods=["POST"]), Route("/health", health, methods=["GET"])])
