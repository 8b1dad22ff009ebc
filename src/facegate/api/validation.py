r"""Validate a JSON request against an operation's input shape in botocore's model.

Every rule the model states is enforced: required members, unknown members, types,
lengths, numeric ranges, patterns and enums. The message names the offending field by
its path (``Image.Bytes``, ``Attributes[0]``), so a client can fix its request.
Blobs arrive base64-encoded and leave as bytes; timestamps are epoch seconds.
Patterns are Java regexes (``\p{L}`` in tag keys), hence the ``regex`` module.
Numbers are checked exactly (a 400-digit integer is out of range, not a float overflow),
and strings that no store can hold (NUL, unpaired surrogates) are refused by name.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections import Counter
from typing import Any

import regex

from botocore.model import ListShape, MapShape, Shape, StructureShape

from facegate.api.exceptions import SerializationException
from facegate.service.exceptions import ImageTooLargeException, InvalidParameterException


MAX_NUMBER_CHARACTERS = 1000
"""No member needs a longer number literal (a long has at most 20 digits, a double 17
significant ones); longer ones cost quadratic time to convert, and Python refuses
integers of over 4,300 digits outright."""


def parse_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is an empty request.

    Only strict JSON in UTF-8 (no byte order mark) is accepted: no ``NaN`` or ``Infinity``,
    no duplicate keys, no number literal over ``MAX_NUMBER_CHARACTERS`` characters, no
    nesting deeper than the interpreter's recursion limit. Anything else is a
    ``SerializationException``, never a crash.
    """
    if not body.strip():
        return {}
    try:
        value = json.loads(
            body.decode("utf-8"),
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except UnicodeDecodeError as exc:
        raise SerializationException(f"The request body is not UTF-8: byte {exc.start} is invalid.") from exc
    except json.JSONDecodeError as exc:
        raise SerializationException(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise SerializationException("The request body nests arrays or objects too deeply.") from exc
    if not isinstance(value, dict):
        raise SerializationException("The request body must be a JSON object.")
    return value


def _parse_int(literal: str) -> int:
    _check_number_length(literal)
    return int(literal)


def _parse_float(literal: str) -> float:
    """Overflow (``1e400``) becomes infinity here and is refused by the member's validation."""
    _check_number_length(literal)
    return float(literal)


def _check_number_length(literal: str) -> None:
    if len(literal) > MAX_NUMBER_CHARACTERS:
        raise SerializationException(
            f"The request body has a number of {len(literal)} characters; the limit is {MAX_NUMBER_CHARACTERS}."
        )


def _reject_constant(name: str) -> Any:
    raise SerializationException(f"The request body contains {name}, which is not JSON.")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        duplicate = next(key for key, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise SerializationException(f"The request body repeats the key {_describe(duplicate)}.")
    return value


def validate(shape: StructureShape, params: dict[str, Any]) -> dict[str, Any]:
    """Validated params with blobs decoded to bytes and timestamps to datetimes."""
    return _structure(shape, params, "")


def _fail(path: str, problem: str) -> InvalidParameterException:
    """``path`` holds the client's own member names and map keys, so it is cut short."""
    shown = path if len(path) <= 200 else path[:197] + "..."
    return InvalidParameterException(f"Invalid parameter {shown or 'request'}: {problem}")


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
        return _range(shape, _integer(kind, value, path), path)
    if kind in ("float", "double"):
        return _float(shape, value, path)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _fail(path, "expected true or false")
        return value
    if kind == "blob":
        return _blob(shape, value, path)
    if kind == "timestamp":
        return _timestamp(value, path)
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


_UNSTORABLE = regex.compile(r"[\x00\ud800-\udfff]")
"""NUL (PostgreSQL text cannot hold it) and lone UTF-16 surrogates (``"\ud800"`` is valid
JSON but not Unicode text: it cannot be encoded, stored or compared)."""


def _string(shape: Shape, value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, "expected a string")
    if _UNSTORABLE.search(value):
        raise _fail(path, "contains a NUL character or an unpaired UTF-16 surrogate")
    enum = shape.metadata.get("enum")
    if enum and value not in enum:
        raise _fail(path, f"must be one of {', '.join(enum)}")
    _length(shape, len(value), path, "characters")
    pattern = shape.metadata.get("pattern")
    if pattern and not regex.fullmatch(pattern, value):
        raise _fail(path, f"must match the pattern {pattern}")
    return value


_INTEGER_BITS = {"integer": 32, "long": 64}
"""Smithy's sizes: what a Java service (and our SQL) can hold; beyond them Rekognition fails too."""


def _integer(kind: str, value: Any, path: str) -> int:
    """An exact integer: ints are never converted to float, which overflows past 1e308."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected an integer, got {_describe(value)}")
    limit = 2 ** (_INTEGER_BITS[kind] - 1)
    if not -limit <= value < limit:
        raise _fail(path, f"is out of range for a {_INTEGER_BITS[kind]}-bit integer")
    return value


def _float(shape: Shape, value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise _fail(path, f"expected a finite number, got {_describe(value)}")
    _range(shape, value, path)  # exact, before any conversion
    try:
        return float(value)
    except OverflowError:
        raise _fail(path, "is out of range for a number") from None


def _timestamp(value: Any, path: str) -> dt.datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, "expected a timestamp in epoch seconds")
    try:
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise _fail(path, "is not a timestamp between the years 1 and 9999") from None


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


def _describe(value: Any) -> str:
    """A short, safe rendering of a client's value for an error message (never the whole
    value: it may be megabytes, or nested too deeply to print)."""
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value) if isinstance(value, str) or value is None or isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
