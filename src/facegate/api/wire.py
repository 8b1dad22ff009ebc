"""AWS JSON 1.1 responses: blobs as base64, timestamps as epoch seconds, errors as
``{"__type": ..., "Message": ...}``."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from starlette.responses import Response

CONTENT_TYPE = "application/x-amz-json-1.1"


def _encode(value: Any) -> Any:
    """The result as JSON values, with None members left out. Leaves are tested first: a
    search's 150 matches hold about 1,500 of them, and the pass is on every response."""
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return value


def json_response(result: dict[str, Any], request_id: str) -> Response:
    return Response(json.dumps(_encode(result), separators=(",", ":")), 200, {"x-amzn-RequestId": request_id}, media_type=CONTENT_TYPE)


def error_response(code: str, message: str, status: int, request_id: str) -> Response:
    body = json.dumps({"__type": code, "Message": message})
    return Response(body, status, {"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code}, media_type=CONTENT_TYPE)
