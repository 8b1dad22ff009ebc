"""Check a boto3-parsed response member by member against botocore's output shape.

boto3 already parsed the response (so it passes botocore's parser); this adds what the
parser tolerates: unknown members, wrong types, values outside enums.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from botocore.model import Shape

from facegate.api.service_model import operation_model

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "long": (int,),
    "float": (float, int),
    "double": (float, int),
    "boolean": (bool,),
    "blob": (bytes,),
    "timestamp": (dt.datetime,),
}


def assert_matches_output_shape(operation: str, response: dict[str, Any]) -> None:
    model = operation_model(operation)
    assert model is not None, f"{operation} is not in the Rekognition model"
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    _check(model.output_shape, body, operation)


def _check(shape: Shape, value: Any, path: str) -> None:
    kind = shape.type_name
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: expected a structure, got {type(value).__name__}"
        for name, item in value.items():
            assert name in shape.members, f"{path}.{name}: not a member of {shape.name}"
            _check(shape.members[name], item, f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), f"{path}: expected a list"
        for i, item in enumerate(value):
            _check(shape.member, item, f"{path}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: expected a map"
        for key, item in value.items():
            _check(shape.key, key, f"{path}.{key}")
            _check(shape.value, item, f"{path}.{key}")
    else:
        assert isinstance(value, _PYTHON_TYPES[kind]) and not (kind != "boolean" and isinstance(value, bool)), (
            f"{path}: expected {kind}, got {type(value).__name__}"
        )
        enum = shape.metadata.get("enum")
        assert not enum or value in enum, f"{path}: {value!r} is not one of {enum}"
