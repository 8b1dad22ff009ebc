r"""Validate a JSON request against an operation's input shape in botocore's model.

Every rule the model states is enforced: required members, unknown members, types,
lengths, numeric ranges, patterns and enums. The message names the offending field by
its path (``Image.Bytes``, ``Attributes[0]``), so a client can fix its request.
Blobs arrive base64-encoded and leave as bytes; timestamps are epoch seconds.
Patterns are Java regexes (``\p{L}`` in tag keys), hence the ``regex`` module.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from typing import Any

import regex

from botocore.model import ListShape, MapShape, Shape, StructureShape

from facegate.api.exceptions import SerializationException
from facegate.service.exceptions import ImageTooLargeException, InvalidParameterException


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty request."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise SerializationException("The request body must be a JSON object.")
    return value


def validate(shape: StructureShape, params: dict[str, Any]) -> dict[str, Any]:
    """Validated params with blobs decoded to bytes and timestamps to datetimes."""
    return _structure(shape, params, "")


def _fail(path: str, problem: str) -> InvalidParameterException:
    return InvalidParameterException(f"Invalid parameter {path or 'request'}: {problem}")


def _value(shape: Shape, value: Any, path: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return _structure(shape, value, path)  # type: ignore[arg-type]
    if kind == "list":
        return _list(shape, value, path)  # type: ignore[arg-type]
    if kind == "map":
        return _map(shape, value, path)  # type: ignore[arg-type]
    if kind == "string":
        return _string(shape, value, path)
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise _fail(path, f"expected an integer, got {json.dumps(value)[:40]}")
        return _range(shape, int(value), path)
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(path, f"expected a number, got {json.dumps(value)[:40]}")
        return _range(shape, float(value), path)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(path, "expected true or false")
        return value
    if kind == "blob":
        return _blob(shape, value, path)
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(path, "expected a timestamp in epoch seconds")
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    raise _fail(path, f"unsupported type {kind}")


def _structure(shape: StructureShape, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "expected an object")
    members = shape.members
    for name in value:
        if name not in members:
            raise _fail(_join(path, name), "unknown member")
    for name in shape.required_members:
        if value.get(name) is None:
            raise _fail(_join(path, name), "is required")
    return {name: _value(members[name], item, _join(path, name)) for name, item in value.items() if item is not None}


def _list(shape: ListShape, value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(path, "expected a list")
    _length(shape, len(value), path, "items")
    return [_value(shape.member, item, f"{path}[{i}]") for i, item in enumerate(value)]


def _map(shape: MapShape, value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, "expected an object")
    _length(shape, len(value), path, "entries")
    return {
        _value(shape.key, key, f"{path}.{key}"): _value(shape.value, item, f"{path}.{key}") for key, item in value.items()
    }


def _string(shape: Shape, value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "expected a string")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        raise _fail(path, f"must be one of {', '.join(enum)}")
    _length(shape, len(value), path, "characters")
    pattern = shape.metadata.get("pattern")
    if pattern and not regex.fullmatch(pattern, value):
        raise _fail(path, f"must match the pattern {pattern}")
    return value


def _blob(shape: Shape, value: Any, path: str) -> bytes:
    if not isinstance(value, str):
        raise _fail(path, "expected base64-encoded bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail(path, "is not valid base64") from exc
    maximum = shape.metadata.get("max")
    if maximum is not None and len(data) > maximum and shape.name == "ImageBlob":
        raise ImageTooLargeException(f"{path} is {len(data)} bytes; the limit is {maximum} bytes (5 MB).")
    _length(shape, len(data), path, "bytes")
    return data


def _length(shape: Shape, size: int, path: str, unit: str) -> None:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and size < low:
        raise _fail(path, f"must have at least {low} {unit}")
    if high is not None and size > high:
        raise _fail(path, f"must have at most {high} {unit}")


def _range(shape: Shape, number: float, path: str) -> Any:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and number < low:
        raise _fail(path, f"must be at least {low}")
    if high is not None and number > high:
        raise _fail(path, f"must be at most {high}")
    return number


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
