"""JSON in the byte form NSQ's Go binaries produce and accept (nsqd, nsqlookupd, nsqadmin).

Encoding matches Go's `encoding/json`: no spaces, non-ASCII left as UTF-8,
`<`, `>`, `&`, U+2028 and U+2029 escaped as `\\u00XX` / `\\u20XX`.  Struct
fields keep their declared order (callers build dicts in that order); Go maps
come out with sorted keys (`sort_keys=True`).

Decoding into a Go struct (`decode_struct`) follows Go's rules that matter on
the wire: keys match field names exactly or case-insensitively, unknown keys
are ignored, `null` leaves a field alone, and a value of the wrong type
(e.g. a string or 4150.0 for an int field) is an error.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional

_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def dumps(obj: Any, sort_keys: bool = False) -> bytes:
    """Encode obj as Go's json.Marshal would (dicts in their own order unless sort_keys)."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys,
                      allow_nan=False)
    for raw, escaped in _ESCAPES:
        if raw in text:
            text = text.replace(raw, escaped)
    return text.encode("utf-8")


class Pairs(list):
    """A decoded JSON object, as its (key, value) pairs in document order (duplicates kept).

    Use as `json.loads(..., object_pairs_hook=Pairs)` to see objects as Go's
    decoder does: in order, with case-insensitive field matching left to the caller.
    """


def go_kind(value: Any) -> str:
    """The JSON kind Go's UnmarshalTypeError names for a decoded value ("cannot unmarshal KIND into ...")."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (Pairs, dict)):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _reject_constant(name: str) -> Any:
    raise ValueError("invalid JSON value %s" % name)


def decode_struct(body: bytes, fields: Dict[str, type]) -> Dict[str, Any]:
    """Decode a JSON object into {field: value} for the given field types (str or int).

    Raises ValueError where Go's json.Unmarshal into a struct returns an error.
    """
    text = body.decode("utf-8", "replace")
    pairs = json.loads(text, object_pairs_hook=Pairs,
                       parse_constant=_reject_constant)
    if pairs is None:
        return {}
    if not isinstance(pairs, Pairs):
        raise ValueError("cannot unmarshal %s into a struct" % type(pairs).__name__)
    folded = {name.casefold(): name for name in fields}
    out: Dict[str, Any] = {}
    for key, value in pairs:
        name: Optional[str] = key if key in fields else folded.get(key.casefold())
        if name is None or value is None:
            continue
        kind = fields[name]
        if kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("cannot unmarshal %r into int field %s" % (value, name))
            if not _INT64_MIN <= value <= _INT64_MAX:
                raise ValueError("number %d overflows int field %s" % (value, name))
        elif kind is str:
            if not isinstance(value, str):
                raise ValueError("cannot unmarshal %r into string field %s" % (value, name))
        out[name] = value
    return out
