r"""Hostile requests for every supported operation, generated from botocore's Rekognition model.

The generator walks each operation's input shape and, starting from a valid request that
names real resources (``World``), changes one thing at a time:

- ``wrong-type``: each member given every other JSON type;
- ``missing-required``: each required member dropped, then all of them;
- ``unknown-member``: extra members at every structure level;
- ``boundary``: min-1, min, max and max+1 for lengths, item counts and numeric ranges;
- ``enum``: every enum value and some near misses;
- ``pattern``: strings that break the member's pattern (or, without one, odd strings);
- ``huge-string``: megabyte strings and keys;
- ``null``: null members, items and map values;
- ``nested-shape``: lists and maps holding the wrong shapes, and deep nesting inside members;
- ``invalid-json``: bodies that are not a JSON object (truncated, non-UTF-8, deep nesting,
  huge integer literals, lone surrogates, NaN, duplicate keys, arrays, empty);
- ``envelope``: wrong X-Amz-Target values and missing, garbled or forged signatures;
- ``image``: every image of the hostile corpus in every image member;
- ``valid``: well-formed requests (some through boto3) so the service paths run too;
- ``compound`` (long runs only): several members changed at once.

The plan for a run is deterministic for its seed and size, so a failure's number replays it.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import regex
from botocore.model import Shape, StructureShape
from botocore.serialize import create_serializer

from facegate.api.service_model import TARGET_PREFIX, operation_model, rekognition_model
from facegate.service.operations import OPERATIONS
from tests.support.image_corpus import CorpusImage

AWS_COMMON_ERRORS = frozenset({
    # Errors every AWS JSON service may answer, besides those in the service's own model.
    "AccessDeniedException", "IncompleteSignatureException", "InternalFailure", "InvalidAction",
    "InvalidClientTokenId", "InvalidSignatureException", "MissingAuthenticationTokenException",
    "NotAuthorized", "RequestExpired", "SerializationException", "ServiceUnavailable",
    "ThrottlingException", "UnknownOperationException", "UnrecognizedClientException",
    "UnsupportedOperationException", "ValidationException",
})


def known_error_types() -> frozenset[str]:
    """Every ``__type`` a Rekognition client can be sent: the model's errors and AWS's common ones."""
    return AWS_COMMON_ERRORS | {shape.name for shape in rekognition_model().error_shapes}


IMAGE_MEMBERS = (
    ("DetectFaces", "Image"), ("CompareFaces", "SourceImage"), ("CompareFaces", "TargetImage"),
    ("IndexFaces", "Image"), ("SearchFacesByImage", "Image"), ("SearchUsersByImage", "Image"),
)
"""Every place an image is sent as ``Image.Bytes``."""

DESTRUCTIVE = frozenset({"DeleteCollection", "DeleteFaces", "DeleteUser", "DisassociateFaces"})
"""Operations whose requests name the decoy collection, so the main one survives the run."""


@dataclass(frozen=True)
class Blob:
    """Bytes for a blob member, base64-encoded only when sent (5 MB boundary cases stay cheap
    to plan). ``size`` pads ``head`` with zero bytes; ``name`` is the corpus image's name."""

    head: bytes
    size: int | None = None
    name: str | None = None

    def data(self) -> bytes:
        return self.head if self.size is None else self.head + bytes(self.size - len(self.head))

    def label(self) -> str:
        return f"<image {self.name}>" if self.name else f"<{self.size or len(self.head)} bytes>"


@dataclass(frozen=True)
class World:
    """Real resources created before the run, so requests can reach the service."""

    collection_id: str
    """Searched and listed; its faces and user are never deleted."""
    decoy_collection_id: str
    """Where destructive requests point."""
    image_collection_id: str
    """Where IndexFaces adds faces."""
    collection_arn: str
    face_ids: tuple[str, ...]
    user_id: str
    decoy_face_ids: tuple[str, ...]
    decoy_user_ids: tuple[str, ...]
    doomed_collection_ids: tuple[str, ...]
    """Spare collections that valid DeleteCollection requests may delete, one each."""
    face: CorpusImage
    """A real face photo (JPEG) for the valid side."""
    small_image: CorpusImage
    """An image the server refuses only after validation (under the minimum size): it keeps
    requests that change some other member cheap (detection and embedding cost ~0.5 s CPU)."""


@dataclass(frozen=True)
class FuzzRequest:
    """One request of the plan. ``params`` is any JSON value (with ``Blob``s); ``raw`` overrides it."""

    category: str
    operation: str
    description: str
    params: Any = None
    raw: bytes | None = None
    must_reject: bool = False
    """A well-behaved server answers 4xx: the request is malformed by the model's rules."""
    expected: frozenset[str] = frozenset()
    """When not empty, the only acceptable answers are these errors."""
    via_boto3: bool = False
    envelope: str = "signed"
    """signed, unsigned, garbled-authorization, forged-signature or unknown-key."""
    target: str | None = None
    """X-Amz-Target when not ``RekognitionService.<operation>``; an empty string sends none."""
    number: int = 0

    def body(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.params, default=_blob_to_wire).encode()

    def header_target(self) -> str | None:
        """The X-Amz-Target to send; None sends no such header."""
        if self.target == "":
            return None
        return self.target or f"{TARGET_PREFIX}.{self.operation}"

    def boto3_params(self) -> dict[str, Any]:
        return _blobs_to_bytes(self.params)

    def reproduction(self, limit: int = 600) -> str:
        """The request as a person can read and rebuild it: long strings abbreviated."""
        if self.raw is not None:
            shown = self.raw[:limit]
            more = f" ... ({len(self.raw)} bytes)" if len(self.raw) > limit else ""
            return f"raw body {shown!r}{more}"
        text = json.dumps(_abbreviate(self.params), ensure_ascii=True)
        return text if len(text) <= limit else text[:limit] + f" ... ({len(text)} chars)"


def _blob_to_wire(value: object) -> str:
    if isinstance(value, Blob):
        return base64.b64encode(value.data()).decode()
    raise TypeError(f"cannot send {type(value).__name__}")


def _blobs_to_bytes(value: Any) -> Any:
    if isinstance(value, Blob):
        return value.data()
    if isinstance(value, dict):
        return {k: _blobs_to_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_blobs_to_bytes(v) for v in value]
    return value


def _abbreviate(value: Any) -> Any:
    if isinstance(value, Blob):
        return value.label()
    if isinstance(value, str) and len(value) > 80:
        return f"{value[:20]}...<{len(value)} chars>"
    if isinstance(value, dict):
        items = list(value.items())
        shown = {_abbreviate(k): _abbreviate(v) for k, v in items[:8]}
        if len(items) > 8:
            shown["..."] = f"<{len(items)} entries>"
        return shown
    if isinstance(value, list):
        shown_list = [_abbreviate(v) for v in value[:8]]
        return shown_list + [f"...<{len(value)} items>"] if len(value) > 8 else shown_list
    return value


# -- valid values ----------------------------------------------------------------------------

MemberPath = tuple[Any, ...]
"""Where a member sits: structure member names, list indexes, map keys (``MAP_KEY`` for the key)."""

MAP_KEY = "<key>"


class Valid:
    """Valid values for members, by shape name, naming the world's resources."""

    def __init__(self, world: World, rng: random.Random) -> None:
        self.world = world
        self.rng = rng

    def collection_for(self, operation: str) -> str:
        if operation in DESTRUCTIVE:
            return self.world.decoy_collection_id
        if operation == "IndexFaces":
            return self.world.image_collection_id
        if operation == "CreateCollection":
            return f"fuzz-new-{self.rng.getrandbits(40):010x}"
        return self.world.collection_id

    def params(self, operation: str, optional: float = 1.0) -> dict[str, Any]:
        """Every required member, and each optional one with probability ``optional``."""
        shape = _input_shape(operation)
        chosen = {}
        for name, member in shape.members.items():
            if name in shape.required_members or self.rng.random() < optional:
                value = self.value(operation, (name,), member)
                if value is not None:
                    chosen[name] = value
        return chosen

    def value(self, operation: str, path: MemberPath, shape: Shape) -> Any:
        """A valid value for ``shape`` at ``path`` (None: no sensible valid value; omit it)."""
        name, world, rng = shape.name, self.world, self.rng
        destructive = operation in DESTRUCTIVE
        named: dict[str, Callable[[], Any]] = {
            "CollectionId": lambda: self.collection_for(operation),
            "FaceId": lambda: rng.choice(world.decoy_face_ids if destructive else world.face_ids),
            "FaceIdList": lambda: rng.sample(world.decoy_face_ids if destructive else world.face_ids, 1),
            "UserFaceIdList": lambda: rng.sample(world.decoy_face_ids if destructive else world.face_ids[:1], 1),
            "UserId": lambda: self._user_id(operation),
            "ExternalImageId": lambda: f"fuzz:{rng.getrandbits(32):08x}",
            "ClientRequestToken": lambda: uuid.UUID(int=rng.getrandbits(128)).hex,
            "ResourceArn": lambda: world.collection_arn,
            "TagMap": lambda: {"fuzz": "yes"},
            "TagKeyList": lambda: ["fuzz"],
            "PaginationToken": lambda: self._token(operation),
            "Image": lambda: {"Bytes": Blob(world.face.data, name=world.face.name)},
            "S3Object": lambda: None,
            "Attributes": lambda: rng.sample(shape.member.metadata["enum"], rng.randint(1, 3)),
        }
        if name in named:
            return named[name]()
        return self.generic(shape)

    def generic(self, shape: Shape) -> Any:
        meta, kind = shape.metadata, shape.type_name
        if "enum" in meta:
            return self.rng.choice(meta["enum"])
        if kind in ("integer", "long"):
            low = meta.get("min", 0)
            return self.rng.randint(low, min(meta.get("max", low + 100), low + 100))
        if kind in ("float", "double"):
            return round(self.rng.uniform(meta.get("min", 0), meta.get("max", 100)), 3)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "string":
            return "fuzz" + "a" * max(0, meta.get("min", 0) - 4)
        if kind == "blob":
            return Blob(b"fuzz")
        if kind == "structure":
            return {n: v for n, m in shape.members.items() if (v := self.generic(m)) is not None}
        if kind == "list":
            return [self.generic(shape.member)]
        if kind == "map":
            return {self.generic(shape.key): self.generic(shape.value)}
        return None

    def _user_id(self, operation: str) -> str:
        if operation == "CreateUser":
            return f"fuzz-user-{self.rng.getrandbits(40):010x}"
        if operation in DESTRUCTIVE:
            return self.rng.choice(self.world.decoy_user_ids)
        return self.world.user_id

    def _token(self, operation: str) -> str | None:
        """A real pagination token: the last key of a page (see ``service.context.after_token``)."""
        return {"ListCollections": self.world.collection_id, "ListFaces": self.world.face_ids[0],
                "ListUsers": self.world.user_id}.get(operation)


def _input_shape(operation: str) -> StructureShape:
    model = operation_model(operation)
    assert model is not None, operation
    return model.input_shape


# -- walking the model -----------------------------------------------------------------------

def member_paths(shape: StructureShape, prefix: MemberPath = ()) -> Iterator[tuple[MemberPath, Shape, str]]:
    """Every member reachable in the input shape, depth first, with the kind of its container
    (``structure``, ``list`` or ``map``); a list's item is index 0, a map's value key "fuzz"."""
    for name, member in shape.members.items():
        path = (*prefix, name)
        yield path, member, "structure"
        yield from _inner_paths(member, path)


def _inner_paths(shape: Shape, path: MemberPath) -> Iterator[tuple[MemberPath, Shape, str]]:
    if shape.type_name == "structure":
        yield from member_paths(shape, path)  # type: ignore[arg-type]
    elif shape.type_name == "list":
        yield (*path, 0), shape.member, "list"  # type: ignore[attr-defined]
        yield from _inner_paths(shape.member, (*path, 0))  # type: ignore[attr-defined]
    elif shape.type_name == "map":
        yield (*path, MAP_KEY), shape.key, "map"  # type: ignore[attr-defined]
        yield (*path, "fuzz"), shape.value, "map"  # type: ignore[attr-defined]


def with_value(base: dict[str, Any], path: MemberPath, value: Any, valid: Valid, operation: str) -> dict[str, Any]:
    """A copy of ``base`` with ``value`` at ``path``, creating valid containers on the way.
    A ``MAP_KEY`` step replaces the map with one entry keyed ``value``."""
    if path[-1] == MAP_KEY:
        return with_value(base, path[:-1], {value: "yes"}, valid, operation)
    result = copy.deepcopy(base)
    shape: Shape = _input_shape(operation)
    node: Any = result
    for depth, step in enumerate(path[:-1]):
        shape = _child(shape, step)
        child = _get(node, step)
        if not isinstance(child, (dict, list)):
            child = valid.value(operation, path[: depth + 1], shape)
            if not isinstance(child, (dict, list)):
                child = valid.generic(shape)
            _put(node, step, child)
        node = child
    _put(node, path[-1], value)
    return result


def _get(node: Any, step: Any) -> Any:
    if isinstance(node, list):
        return node[step] if step < len(node) else None
    return node.get(step)


def _put(node: Any, step: Any, value: Any) -> None:
    if isinstance(node, list) and step >= len(node):
        node.append(value)
    else:
        node[step] = value


def without(base: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in base.items() if k != name}


def _child(shape: Shape, step: Any) -> Shape:
    if shape.type_name == "structure":
        return shape.members[step]  # type: ignore[attr-defined]
    if shape.type_name == "list":
        return shape.member  # type: ignore[attr-defined]
    if shape.type_name == "map":
        return shape.key if step == MAP_KEY else shape.value  # type: ignore[attr-defined]
    raise ValueError(f"no member {step!r} in a {shape.type_name}")


def _show(path: MemberPath) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


# -- the mutations ---------------------------------------------------------------------------

ODD_STRINGS = (
    "", " ", "bad id!", "../../etc/passwd", "a b", "\u00fc", "\U0001f600", "a\nb", "x' OR '1'='1", "%00",
    "\u0000", "\ud800", "\udfff\ud800", "<script>", "aws:reserved", "\u202e", "\ufeff",
)
"""Strings that break most patterns; each is checked against the member's own pattern."""

WRONG_TYPES: dict[str, Any] = {
    "string": "fuzz", "integer": 7, "fraction": 0.5, "boolean": True, "list": ["fuzz"], "object": {"fuzz": 1},
}

_ACCEPTS = {
    # Which of WRONG_TYPES a shape type takes as the right type.
    "string": {"string"}, "blob": {"string"}, "integer": {"integer"}, "long": {"integer"},
    "float": {"integer", "fraction"}, "double": {"integer", "fraction"}, "boolean": {"boolean"},
    "timestamp": {"integer", "fraction"}, "structure": {"object"}, "map": {"object"}, "list": {"list"},
}


class Mutations:
    """The single-change requests for one operation, by category."""

    def __init__(self, operation: str, valid: Valid) -> None:
        self.operation = operation
        self.valid = valid
        self.shape = _input_shape(operation)
        self.face_base = valid.params(operation, optional=1.0)
        small = valid.world.small_image
        self.base = {name: {"Bytes": Blob(small.data, name=small.name)} if name in _image_members(operation) else value
                     for name, value in self.face_base.items()}

    def request(self, category: str, description: str, params: Any, must_reject: bool = True) -> FuzzRequest:
        return FuzzRequest(category, self.operation, description, params=params, must_reject=must_reject)

    def at(self, path: MemberPath, value: Any) -> dict[str, Any]:
        return with_value(self.base, path, value, self.valid, self.operation)

    def all(self) -> dict[str, list[FuzzRequest]]:
        categories: dict[str, Callable[[], Iterator[FuzzRequest]]] = {
            "wrong-type": self.wrong_types, "missing-required": self.missing_required,
            "unknown-member": self.unknown_members, "boundary": self.boundaries, "enum": self.enums,
            "pattern": self.patterns, "huge-string": self.huge_strings, "null": self.nulls,
            "nested-shape": self.nested_shapes,
        }
        return {name: list(make()) for name, make in categories.items()}

    def wrong_types(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            if path[-1] == MAP_KEY:
                continue  # JSON object keys are always strings
            for kind, value in WRONG_TYPES.items():
                if kind not in _ACCEPTS[shape.type_name]:
                    yield self.request("wrong-type", f"{_show(path)} = {json.dumps(value)} ({kind} for a {shape.type_name})", self.at(path, value))
            if shape.type_name in ("integer", "long"):
                yield self.request("wrong-type", f'{_show(path)} = "7" (a numeric string)', self.at(path, "7"))

    def missing_required(self) -> Iterator[FuzzRequest]:
        required = self.shape.required_members
        for name in required:
            yield self.request("missing-required", f"without {name}", without(self.base, name))
        if required:
            optional = {k: v for k, v in self.base.items() if k not in required}
            yield self.request("missing-required", "only the optional members", optional)

    def unknown_members(self) -> Iterator[FuzzRequest]:
        for name in ("Bogus", "", "__proto__", "\ud800", "x" * 10_000, "$type"):
            yield self.request("unknown-member", f"extra top-level member {name[:20]!r}", {**self.base, name: "fuzz"})
        yield self.request("unknown-member", "an extra member set to null", {**self.base, "Bogus": None})
        for real in list(self.shape.members)[:3]:
            variant = real[0].lower() + real[1:]
            changed = {**without(self.base, real), variant: self.base.get(real, "fuzz")}
            yield self.request("unknown-member", f"a member name in the wrong case: {variant}", changed)
        for path, shape, _ in member_paths(self.shape):
            if shape.type_name == "structure":
                inner = self.valid.value(self.operation, path, shape) or self.valid.generic(shape)
                yield self.request("unknown-member", f"an extra member inside {_show(path)}", self.at(path, {**inner, "Bogus": 1}))

    def boundaries(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            low, high = shape.metadata.get("min"), shape.metadata.get("max")
            kind = shape.type_name
            if kind in ("integer", "long", "float", "double"):
                yield from self._numeric_boundaries(path, shape, low, high)
            elif kind in ("string", "list", "map", "blob") and (low is not None or high is not None):
                for label, size in _edges(low, high):
                    inside = (low is None or size >= low) and (high is None or size <= high)
                    yield self.request("boundary", f"{_show(path)} of size {size} ({label})",
                                       self.at(path, self._sized(shape, size)), must_reject=not inside)
            elif kind == "list":
                for size in (0, 1, 14, 1000):
                    yield self.request("boundary", f"{_show(path)} with {size} items", self.at(path, self._sized(shape, size)),
                                       must_reject=False)

    def _numeric_boundaries(self, path: MemberPath, shape: Shape, low: float | None, high: float | None) -> Iterator[FuzzRequest]:
        integer = shape.type_name in ("integer", "long")
        cases: list[tuple[str, Any]] = []
        if low is not None:
            cases += [("min-1", low - 1), ("min", low)] + ([] if integer else [("just under min", low - 1e-9)])
        if high is not None:
            cases += [("max", high), ("max+1", high + 1)] + ([] if integer else [("just over max", high + 1e-9)])
        cases += [("-2^31-1", -(2**31) - 1), ("2^31", 2**31), ("2^63", 2**63), ("-2^63-1", -(2**63) - 1),
                  ("10^30", 10**30), ("1e308", 1e308), ("-0.0", -0.0), ("5e-324", 5e-324)]
        for label, value in cases:
            outside = (low is not None and value < low) or (high is not None and value > high)
            fraction = integer and isinstance(value, float) and not value.is_integer()
            yield self.request("boundary", f"{_show(path)} = {value!r} ({label})", self.at(path, value), must_reject=outside or fraction)

    def _sized(self, shape: Shape, size: int) -> Any:
        """A value of ``shape`` with ``size`` characters, bytes, items or entries, valid otherwise."""
        kind, rng = shape.type_name, self.valid.rng
        if kind == "string":
            return _filler(shape, size)
        if kind == "blob":
            return Blob(b"\xff\xd8\xff"[:size], size=size if size > 3 else None)
        if kind == "map":
            return {f"k{i}": "v" for i in range(size)}
        member = shape.member  # type: ignore[attr-defined]
        if member.name == "FaceId":
            return [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(size)]
        if "enum" in member.metadata:
            return [member.metadata["enum"][i % len(member.metadata["enum"])] for i in range(size)]
        return [f"k{i}" for i in range(size)]

    def enums(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            enum = shape.metadata.get("enum")
            if not enum:
                continue
            for value in enum:
                # A valid enum value goes with the real face, so the service acts on it.
                changed = with_value(self.face_base, path, value, self.valid, self.operation)
                yield self.request("enum", f"{_show(path)} = {value}", changed, must_reject=False)
            for value in ("", enum[0].lower(), enum[0] + " ", " " + enum[0], enum[0] + "\u0000", ",".join(enum[:2]),
                          "SHOE_SIZE", enum[0] + "\ud800"):
                yield self.request("enum", f"{_show(path)} = {value!r} (not in the enum)", self.at(path, value))

    def patterns(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            if shape.type_name == "blob":
                for text, reject in (("not base64!", True), ("====", True), ("\ud800AAA", True), ("AAA", False),
                                     ("-_-_", False), ("AA==AA==", False)):
                    yield self.request("pattern", f"{_show(path)} = {text!r} (not canonical base64)", self.at(path, text), must_reject=reject)
                continue
            if shape.type_name != "string" or "enum" in shape.metadata:
                continue
            pattern = shape.metadata.get("pattern")
            low, high = shape.metadata.get("min", 0), shape.metadata.get("max")
            for text in ODD_STRINGS + _near_misses(shape):
                text = text + "a" * (low - len(text)) if len(text) < low else text
                if high is not None and len(text) > high:
                    continue
                breaks = pattern is not None and not regex.fullmatch(pattern, text)
                yield self.request("pattern", f"{_show(path)} = {text!r}" + (" (breaks the pattern)" if breaks else ""),
                                   self.at(path, text), must_reject=breaks)

    def huge_strings(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            if shape.type_name not in ("string", "blob"):
                continue
            high = shape.metadata.get("max")
            for size in (100_000, 1_000_000):
                # A blob gets as many base64 characters, i.e. 3/4 as many bytes.
                too_long = high is not None and (size if shape.type_name == "string" else size * 3 // 4) > high
                reject = too_long or (shape.name == "FaceId")
                yield self.request("huge-string", f"{_show(path)} of {size:,} characters", self.at(path, _big("a" if shape.type_name == "string" else "QUFB", size)),
                                   must_reject=reject)
        yield self.request("huge-string", "a member name of 1,000,000 characters", {**self.base, _big("k", 1_000_000): 1})

    def nulls(self) -> Iterator[FuzzRequest]:
        required = set(self.shape.required_members)
        yield self.request("null", "the body is null", None)
        for path, _shape, container in member_paths(self.shape):
            if path[-1] == MAP_KEY:
                continue
            # A null structure member counts as absent; a null list item or map value is invalid.
            reject = container != "structure" or (len(path) == 1 and path[0] in required)
            yield self.request("null", f"{_show(path)} = null", self.at(path, None), must_reject=reject)

    def nested_shapes(self) -> Iterator[FuzzRequest]:
        for path, shape, _ in member_paths(self.shape):
            if path[-1] == MAP_KEY:
                continue
            value = self.valid.value(self.operation, path, shape)
            value = self.valid.generic(shape) if value is None else value
            deep: Any = value
            for _ in range(200):
                deep = [deep]
            yield self.request("nested-shape", f"{_show(path)} wrapped in a list", self.at(path, [value]))
            yield self.request("nested-shape", f"{_show(path)} wrapped in an object", self.at(path, {"value": value}))
            yield self.request("nested-shape", f"{_show(path)} nested 200 lists deep", self.at(path, deep))
        if "Tags" in self.shape.members:
            yield self.request("nested-shape", "Tags as an AWS tag list", {**self.base, "Tags": [{"Key": "k", "Value": "v"}]})
            yield self.request("nested-shape", "a tag value that is an object", {**self.base, "Tags": {"k": {"v": 1}}})


def _image_members(operation: str) -> set[str]:
    return {member for name, member in IMAGE_MEMBERS if name == operation}


@functools.cache
def _big(unit: str, size: int) -> str:
    """Huge strings, built once and shared by every request that sends one."""
    return (unit * (size // len(unit) + 1))[:size]


def _edges(low: int | None, high: int | None) -> list[tuple[str, int]]:
    edges = []
    if low is not None:
        edges += [("min-1", low - 1), ("min", low)] if low > 0 else [("min", low)]
    if high is not None:
        edges += [("max", high), ("max+1", high + 1)]
    return [(label, size) for label, size in edges if size >= 0]


def _filler(shape: Shape, size: int) -> str:
    """A string of ``size`` characters that matches the shape's pattern (an ARN for ARNs)."""
    if shape.name == "ResourceArn":
        return ("arn:aws:rekognition:us-east-1:000000000000:collection/" + _big("a", size))[:size]
    return _big("a", size)


def _near_misses(shape: Shape) -> tuple[str, ...]:
    if shape.name == "FaceId":
        return ("ABCDEF01-2345-6789-ABCD-EF0123456789", "abcdef0123456789abcdef0123456789", "abcdef01-2345-6789-abcd-ef01234567890",
                "abcdef01-2345-6789-abcd-ef012345678\n")
    if shape.name == "ResourceArn":
        return ("arn:aws:rekognition:us-east-1:000000000000:collection/../other", "arn:aws:s3:::bucket/key/aaaaaaaaaaaa",
                "arn:aws:rekognition:us-east-1:000000000000:collection/\ud800")
    return ()


# -- bodies that are not JSON objects --------------------------------------------------------

def invalid_json(operation: str, valid: Valid) -> list[FuzzRequest]:
    base = json.dumps(valid.params(operation, optional=1.0), default=_blob_to_wire).encode()
    numeric = next((n for n, m in _input_shape(operation).members.items() if m.type_name in ("integer", "float")), "MaxResults")
    text_member = next((n for n, m in _input_shape(operation).members.items() if m.type_name == "string"), "CollectionId")

    def req(description: str, raw: bytes, must_reject: bool = True) -> FuzzRequest:
        return FuzzRequest("invalid-json", operation, description, raw=raw, must_reject=must_reject)

    def member(value: bytes) -> bytes:
        return base[:-1] + (b", " if len(base) > 2 else b"") + value + b"}"

    deep = 100_000
    return [
        req("truncated after one byte", base[:1]),
        req("truncated in the middle", base[: max(2, len(base) // 2)]),
        req("truncated before the closing brace", base[:-1]),
        req("non-UTF-8 bytes in a string", member(f'"{text_member}x": "'.encode() + b'\xff\xfe\xfa"')),
        req("a Latin-1 encoded string", member(f'"{text_member}": "'.encode() + "caf\u00e9".encode("latin-1") + b'"')),
        req("an overlong UTF-8 encoding", member(b'"Bogus": "\xc0\xaf"')),
        req("the body in UTF-16", base.decode().encode("utf-16"), must_reject=False),
        req("the body in UTF-32", base.decode().encode("utf-32"), must_reject=False),
        req("a UTF-8 byte order mark", b"\xef\xbb\xbf" + base, must_reject=False),
        req(f"{deep} nested arrays", b"[" * deep + b"]" * deep),
        req(f"{deep} nested objects", b'{"a":' * deep + b"1" + b"}" * deep),
        req(f"{text_member} nested {deep} arrays deep", member(f'"{text_member}": '.encode() + b"[" * deep + b"]" * deep)),
        req(f"{numeric} as a 5,000-digit integer", member(f'"{numeric}": 1'.encode() + b"0" * 5000)),
        req(f"{numeric} as a 5,000-digit negative integer", member(f'"{numeric}": -9'.encode() + b"9" * 5000)),
        req(f"{numeric} = 1e999999", member(f'"{numeric}": 1e999999'.encode())),
        req(f"{numeric} = NaN", member(f'"{numeric}": NaN'.encode())),
        req(f"{numeric} = Infinity", member(f'"{numeric}": Infinity'.encode())),
        req(f"{numeric} = -Infinity", member(f'"{numeric}": -Infinity'.encode())),
        req("the body is NaN", b"NaN"),
        req(f"{text_member} = lone surrogate \\ud800", member(f'"{text_member}": "\\ud800"'.encode())),
        req(f"{text_member} = reversed surrogates \\udc00\\ud800", member(f'"{text_member}": "\\udc00\\ud800"'.encode())),
        req("a member name that is a lone surrogate", member(b'"\\udfff": 1')),
        req(f"{text_member} with a raw control character", member(f'"{text_member}": "a'.encode() + b"\x00\x01" + b'b"')),
        req(f"duplicate {text_member}, the second invalid", member(f'"{text_member}": "bad id!"'.encode()), must_reject=False),
        req("duplicate keys with different types", member(b'"Bogus": 1, "Bogus": "x"')),
        req("an empty body", b"", must_reject=bool(_input_shape(operation).required_members)),
        req("whitespace only", b" \r\n\t ", must_reject=bool(_input_shape(operation).required_members)),
        req("an empty object", b"{}", must_reject=bool(_input_shape(operation).required_members)),
        req("an array instead of an object", b"[" + base + b"]"),
        req("an empty array", b"[]"),
        req("a string instead of an object", b'"' + operation.encode() + b'"'),
        req("a number instead of an object", b"123"),
        req("true instead of an object", b"true"),
        req("null", b"null"),
        req("trailing garbage", base + b"garbage"),
        req("two objects", base + base),
        req("a trailing comma", base[:-1] + b",}" if len(base) > 2 else b'{"a":1,}'),
        req("single quotes", base.replace(b'"', b"'") if len(base) > 2 else b"{'a': 1}"),
        req("a comment", b"/* c */" + base),
        req("a NUL byte before the body", b"\x00" + base),
        req("100,000 unknown members", b"{" + b",".join(b'"k%d":0' % i for i in range(100_000)) + b"}"),
    ]


# -- envelopes: the target header and the signature -----------------------------------------

def envelopes(operation: str, valid: Valid) -> list[FuzzRequest]:
    body = valid.params(operation, optional=0.0)

    def req(description: str, envelope: str = "signed", target: str | None = None, expected: frozenset[str] = frozenset()) -> FuzzRequest:
        return FuzzRequest("envelope", operation, description, params=body, must_reject=True, envelope=envelope,
                           target=target, expected=expected)

    return [
        req("no X-Amz-Target header", target=""),
        req("the target without an operation", target=f"{TARGET_PREFIX}."),
        req("the operation name in lower case", target=f"{TARGET_PREFIX}.{operation.lower()}"),
        req("another service's prefix", target=f"AmazonS3.{operation}"),
        req("a trailing dot and suffix", target=f"{TARGET_PREFIX}.{operation}.Extra"),
        req("an 8 KB target", target=f"{TARGET_PREFIX}.{'X' * 8192}"),
        req("no signature", envelope="unsigned", expected=frozenset({"MissingAuthenticationTokenException"})),
        req("a garbled Authorization header", envelope="garbled-authorization", expected=frozenset({"IncompleteSignatureException"})),
        req("a signature made with the wrong secret", envelope="forged-signature", expected=frozenset({"InvalidSignatureException"})),
        req("an access key id the server never issued", envelope="unknown-key", expected=frozenset({"UnrecognizedClientException"})),
    ]


def unsupported_operations(rng: random.Random, count: int) -> list[FuzzRequest]:
    """Operations in Rekognition's model that facegate does not implement (audited all the same)."""
    names = sorted(set(rekognition_model().operation_names) - set(OPERATIONS))
    return [FuzzRequest("envelope", name, f"{name}: in the model, not implemented", params={}, must_reject=True,
                        expected=frozenset({"UnsupportedOperationException", "InvalidParameterException"}))
            for name in rng.sample(names, min(count, len(names)))]


# -- images ----------------------------------------------------------------------------------

def image_request(image: CorpusImage, operation: str, member: str, valid: Valid) -> FuzzRequest:
    params = valid.params(operation, optional=0.0)
    params[member] = {"Bytes": Blob(image.data, name=image.name)}
    return FuzzRequest("image", operation, f"{member}.Bytes = image {image.name}", params=params,
                       expected=image.expected, via_boto3=valid.rng.random() < 0.3)


# -- the plan --------------------------------------------------------------------------------

LONG_RUN = 10_000
"""From this many requests on (``make fuzz``), every image goes in every image member."""

OVER_THE_BODY_CAP = 8 * 1024 * 1024 + 1
"""One byte over the server's request body cap (``facegate.api.app.MAX_BODY_BYTES``)."""


@dataclass
class Plan:
    requests: list[FuzzRequest]
    counts: dict[str, int] = field(default_factory=dict)
    """Requests per category."""


def make_plan(world: World, images: list[CorpusImage], seed: int, total: int) -> Plan:
    """``total`` requests, deterministic for ``seed``, in a shuffled order.

    First the valid set and the image set (every image once, and those refused before the
    detector in every image member; on a long run, every image in every member); then single
    changes taken in turn from every (category, operation), so that each operation gets each
    kind of change; then, once that catalogue is used up, compound changes.
    """
    rng = random.Random(seed)
    valid = Valid(world, rng)
    long_run = total >= LONG_RUN
    chosen = _valid_requests(valid, long_run) + _image_requests(images, valid, long_run)
    chosen += unsupported_operations(rng, 3)
    chosen.append(FuzzRequest("huge-string", "DetectFaces", "a body one byte over the 8 MB cap",
                              raw=b" " * (OVER_THE_BODY_CAP - 2) + b"{}", must_reject=True))
    catalogues = {operation: Mutations(operation, valid).all() for operation in OPERATIONS}
    buckets: dict[tuple[str, str], list[FuzzRequest]] = {}
    for operation, by_category in catalogues.items():
        for category, requests in by_category.items():
            buckets[(category, operation)] = list(requests)
        buckets[("invalid-json", operation)] = invalid_json(operation, valid)
        buckets[("envelope", operation)] = envelopes(operation, valid)
    order = sorted(buckets)
    rng.shuffle(order)
    for requests in buckets.values():
        rng.shuffle(requests)
    while len(chosen) < total and any(buckets.values()):
        for key in order:
            if buckets[key] and len(chosen) < total:
                chosen.append(buckets[key].pop())
    singles = {op: [r for rs in by_category.values() for r in rs if isinstance(r.params, dict)] for op, by_category in catalogues.items()}
    operations = sorted(OPERATIONS)
    while len(chosen) < total:
        operation = rng.choice(operations)
        chosen.append(_compound(operation, singles[operation], rng))
    chosen = chosen[:total]
    rng.shuffle(chosen)
    numbered = [replace(_boto3_if_possible(r, rng), number=i) for i, r in enumerate(chosen)]
    counts: dict[str, int] = {}
    for request in numbered:
        counts[request.category] = counts.get(request.category, 0) + 1
    return Plan(numbered, counts)


def _valid_requests(valid: Valid, long_run: bool) -> list[FuzzRequest]:
    """Valid requests for every operation: required members only, then all of them (and on
    a long run, three more with a random half of the optional ones)."""
    requests = []
    share = (0.0, 1.0, 0.5, 0.5, 0.5) if long_run else (0.0, 1.0)
    for operation in OPERATIONS:
        for i, optional in enumerate(share):
            params = valid.params(operation, optional=optional)
            if operation == "DeleteCollection":
                params["CollectionId"] = valid.world.doomed_collection_ids[i]
            requests.append(FuzzRequest("valid", operation, f"valid request {i + 1} of {len(share)}", params=params,
                                        via_boto3=i % 2 == 0))
    return requests


def _image_requests(images: list[CorpusImage], valid: Valid, long_run: bool) -> list[FuzzRequest]:
    requests = []
    for i, image in enumerate(images):
        members = IMAGE_MEMBERS if long_run or not image.reaches_detector else (IMAGE_MEMBERS[i % len(IMAGE_MEMBERS)],)
        requests += [image_request(image, operation, member, valid) for operation, member in members]
    return requests


def _compound(operation: str, singles: list[FuzzRequest], rng: random.Random) -> FuzzRequest:
    """Two to four single changes of one operation merged member by member."""
    picks = rng.sample(singles, min(len(singles), rng.randint(2, 4)))
    params: dict[str, Any] = {}
    for pick in picks:
        params.update(pick.params)
    return FuzzRequest("compound", operation, " + ".join(p.description for p in picks), params=params)


_SERIALIZER = create_serializer("json", include_validation=False)


def _boto3_if_possible(request: FuzzRequest, rng: random.Random) -> FuzzRequest:
    """Send about a third of the single-member changes through boto3 (``parameter_validation``
    off) when botocore sends them unchanged; it rewrites some (a string blob is base64-encoded
    again, a string list member is split into characters) and cannot send others (unknown
    members), and those go as raw signed HTTP."""
    if request.raw is not None or request.envelope != "signed" or request.target is not None or not isinstance(request.params, dict):
        return request
    wanted = request.via_boto3 or (request.category not in ("valid", "image") and rng.random() < 0.3)
    if not wanted:
        return request
    try:
        body = _SERIALIZER.serialize_to_request(request.boto3_params(), operation_model(request.operation))["body"]
        unchanged = json.loads(body) == json.loads(request.body())
    except Exception:  # noqa: BLE001 - botocore cannot express this request
        unchanged = False
    return replace(request, via_boto3=unchanged)
