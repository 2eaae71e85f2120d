"""Hypothesis strategies for any protobuf message, built from its descriptor, and for the raw
bytes a stranger can put on the wire.

``message_strategy`` covers what the Python API can express: every scalar type with its edge
values (the extremes of each integer width, NaN, the infinities, empty, long and non-ASCII
strings), enums with values no .proto names (proto3 enums are open), nested messages to a
bounded depth, repeated fields and maps of bounded size, oneofs, and well-known types out of
their documented ranges (a Timestamp in the year 300,000, nanos past a second).

What the Python API refuses to build goes through ``wire_strategy``: a valid encoding with
invalid UTF-8 in a string field, truncated messages, wrong wire types, unknown fields and
garbage.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

T = FieldDescriptor
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
_RANGES = {
    T.TYPE_INT32: INT32,
    T.TYPE_SINT32: INT32,
    T.TYPE_SFIXED32: INT32,
    T.TYPE_INT64: INT64,
    T.TYPE_SINT64: INT64,
    T.TYPE_SFIXED64: INT64,
    T.TYPE_UINT32: UINT32,
    T.TYPE_FIXED32: UINT32,
    T.TYPE_UINT64: UINT64,
    T.TYPE_FIXED64: UINT64,
}
# Bounds that keep one example small enough for a suite of a few minutes on two cores.
MAX_REPEATED = 6
MAX_DEPTH = 4
LONG_STRING = 70_000  # past every name and address limit, well under a message size limit

# Strings that mean something to a server: they reach the code behind the first check.
INTERESTING_TEXT = (
    "",
    " ",
    "\x00",
    "\u202e",
    "\U0001f600",
    "é",
    "\ufffd",
    "null",
    "../../etc/passwd",
    "127.0.0.1",
    "::1",
    "0.0.0.0",
    "8.8.8.8",
    "255.255.255.255",
    "10.0.0.0/8",
    "::/0",
    "1.2.3.4/33",
    "fe80::1%eth0",
    "host:port",
    "127.0.0.1:1",
    "[::1]:0",
    "public.x",
    "pg_catalog",
    "information_schema",
    "'; DROP TABLE x; --",
    '"',
    "%s%n",
)


def _edges(low: int, high: int) -> list[int]:
    values = {low, high, 0, 1, -1, low + 1, high - 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1}
    return sorted(v for v in values if low <= v <= high)


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    """Any integer of the width, its extremes and the values around sign and width changes
    more often than chance would give them."""
    return st.one_of(st.sampled_from(_edges(low, high)), st.integers(low, high))


def floats(width: int = 64) -> st.SearchStrategy[float]:
    edges = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-320, 1e308, -1e308, 3.5e38]
    if width == 32:
        edges = [e for e in edges if not math.isfinite(e) or abs(e) <= 3.4e38]
    return st.one_of(
        st.sampled_from(edges),
        st.floats(width=width, allow_nan=True, allow_infinity=True),
    )


def texts(words: Sequence[str] = ()) -> st.SearchStrategy[str]:
    """Short and very long strings, any Unicode (no lone surrogates: protobuf refuses them
    before anything is sent; the wire strategy covers invalid UTF-8), and meaningful words."""
    return st.one_of(
        st.sampled_from((*INTERESTING_TEXT, *words)),
        st.text(max_size=24),
        st.builds(lambda c, n: c * n, st.characters(codec="utf-8"), st.integers(1, LONG_STRING)),
    )


def _scalar(field: FieldDescriptor, words: Sequence[str]) -> st.SearchStrategy:
    kind = field.type
    if kind in _RANGES:
        return integers(*_RANGES[kind])
    if kind == T.TYPE_DOUBLE:
        return floats(64)
    if kind == T.TYPE_FLOAT:
        return floats(32)
    if kind == T.TYPE_BOOL:
        return st.booleans()
    if kind == T.TYPE_STRING:
        return texts(words)
    if kind == T.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.binary(min_size=4096, max_size=65536))
    if kind == T.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(*INT32))
    raise TypeError(f"{field.full_name}: no strategy for field type {kind}")


def _timestamp_like(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """google.protobuf.Timestamp and Duration: in range, and well out of it."""
    cls = message_factory.GetMessageClass(descriptor)
    seconds = st.one_of(
        st.sampled_from([0, -1, 253402300799, 253402300800, -62135596801, *INT64]),
        st.integers(-(10**12), 10**12),
        integers(*INT64),
    )
    nanos = st.one_of(st.sampled_from([0, 999_999_999, 10**9, -1, *INT32]), integers(*INT32))
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


_WELL_KNOWN = {
    "google.protobuf.Timestamp": _timestamp_like,
    "google.protobuf.Duration": _timestamp_like,
}


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.type == T.TYPE_MESSAGE
        and field.is_repeated
        and field.message_type.GetOptions().map_entry
    )


def message_strategy(
    descriptor: Descriptor,
    *,
    words: Sequence[str] = (),
    depth: int = MAX_DEPTH,
    max_repeated: int = MAX_REPEATED,
) -> st.SearchStrategy[Message]:
    """Any message of ``descriptor``'s type. ``words``: strings the server knows (region
    names, table names), drawn as often as the edge cases so that examples get past the first
    lookup. Nested messages stop at ``depth`` (left unset beyond it)."""
    if descriptor.full_name in _WELL_KNOWN:
        return _WELL_KNOWN[descriptor.full_name](descriptor)
    cls = message_factory.GetMessageClass(descriptor)

    def field_value(field: FieldDescriptor) -> st.SearchStrategy | None:
        if field.type == T.TYPE_MESSAGE:
            if depth <= 0:
                return None
            nested = st.deferred(
                lambda: message_strategy(
                    field.message_type, words=words, depth=depth - 1, max_repeated=max_repeated
                )
            )
            return nested
        return _scalar(field, words)

    # Each oneof sets at most one of its fields (a proto3 `optional` is a oneof of one).
    plain: dict[str, st.SearchStrategy] = {}
    oneofs: list[st.SearchStrategy] = []
    for field in descriptor.fields:
        if field.containing_oneof is not None:
            continue
        if _is_map(field):
            entry = field.message_type
            key = _scalar(entry.fields_by_name["key"], words)
            value = field_value(entry.fields_by_name["value"])
            if value is not None:
                plain[field.name] = st.dictionaries(key, value, max_size=max_repeated)
            continue
        value = field_value(field)
        if value is None:
            continue
        plain[field.name] = st.lists(value, max_size=max_repeated) if field.is_repeated else value
    for oneof in descriptor.oneofs:
        choices = [(f.name, field_value(f)) for f in oneof.fields]
        choices = [st.tuples(st.just(name), s) for name, s in choices if s is not None]
        oneofs.append(st.one_of(st.none(), *choices))

    def build(values: dict, chosen: Iterable) -> Message:
        message = cls()
        for name, value in [*values.items(), *(c for c in chosen if c is not None)]:
            _assign(message, descriptor.fields_by_name[name], value)
        return message

    return st.builds(build, st.fixed_dictionaries({}, optional=plain), st.tuples(*oneofs))


def merged(base: Message, extra: Message) -> Message:
    """A copy of ``base`` with ``extra``'s fields merged in (set scalars replace, repeated
    fields append): a valid request with drawn values in some of its fields."""
    message = type(base)()
    message.CopyFrom(base)
    message.MergeFrom(extra)
    return message


def _assign(message: Message, field: FieldDescriptor, value) -> None:
    name = field.name
    if _is_map(field):
        target = getattr(message, name)
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        getattr(message, name).extend(value)
    elif field.type == T.TYPE_MESSAGE:
        getattr(message, name).CopyFrom(value)
    else:
        setattr(message, name, value)


# -- the wire ------------------------------------------------------------------------------

INVALID_UTF8 = (
    b"\xff",
    b"\xc3\x28",
    b"\xa0\xa1",
    b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\xbc",
    b"\xed\xa0\x80",  # an encoded lone surrogate
    b"\xc0\xaf",  # an overlong "/"
    b"\xf8\x88\x80\x80\x80",
    b"ok\x80",
    b"\xf4\x90\x80\x80",  # past U+10FFFF
)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def string_paths(descriptor: Descriptor, depth: int = MAX_DEPTH) -> list[tuple[int, ...]]:
    """Field-number paths to every string field reachable within ``depth`` messages (map
    keys and values included: a map entry is a nested message on the wire)."""
    paths: list[tuple[int, ...]] = []
    for field in descriptor.fields:
        if field.type == T.TYPE_STRING:
            paths.append((field.number,))
        elif field.type == T.TYPE_MESSAGE and depth > 0:
            paths += [(field.number, *rest) for rest in string_paths(field.message_type, depth - 1)]
    return paths


def _wrap(path: tuple[int, ...], payload: bytes) -> bytes:
    for number in reversed(path):
        payload = length_delimited(number, payload)
    return payload


def wire_strategy(descriptor: Descriptor, *, words: Sequence[str] = ()) -> st.SearchStrategy:
    """Raw request bytes for a method taking ``descriptor``'s messages: valid encodings with
    invalid UTF-8 in a string field, truncated encodings, wrong wire types, unknown fields,
    and garbage."""
    valid = message_strategy(descriptor, words=words, depth=2).map(lambda m: m.SerializeToString())
    paths = string_paths(descriptor)
    parts: list[st.SearchStrategy[bytes]] = [
        st.binary(max_size=256),
        st.builds(_truncated, valid, st.floats(0, 1)),
        st.builds(
            _wrong_wire_type,
            valid,
            st.sampled_from([f.number for f in descriptor.fields] or [1]),
            st.integers(0, 7),
            st.binary(max_size=16),
        ),
        st.builds(
            lambda body, number, junk: body + tag(number, 2) + varint(len(junk)) + junk,
            valid,
            st.integers(1000, 2**29 - 1),
            st.binary(max_size=32),
        ),
        # A length past the end, and a varint that never ends.
        st.builds(lambda body: body + b"\x0a\xff\xff\xff\xff\x0f", valid),
        st.builds(lambda body: body + b"\x08" + b"\xff" * 11, valid),
    ]
    if paths:
        parts.append(
            st.builds(
                lambda body, path, bad, good: body + _wrap(path, good + bad),
                valid,
                st.sampled_from(paths),
                st.sampled_from(INVALID_UTF8),
                st.sampled_from([b"", b"us-east-1", b"x" * 40]),
            )
        )
    return st.one_of(parts)


def _truncated(body: bytes, where: float) -> bytes:
    return body[: max(0, min(len(body) - 1, int(len(body) * where)))] if body else b"\x0a"


def _wrong_wire_type(body: bytes, number: int, wire_type: int, junk: bytes) -> bytes:
    return body + tag(number, wire_type) + junk
