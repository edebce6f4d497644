"""Decoding `nsqd.dat` with the rules nsqd 1.3.0 applies to it.

NSQ reads the file with Go's `json.Unmarshal` into its `Metadata` struct
(`topics: [{name, paused, channels: [{name, paused}]}]`, `version`).  So:

* a value of the wrong JSON type anywhere (a list at the top, `"topics":
  "x"`, a number for a name, channels as an object, a string for paused)
  fails the whole load: `MetadataError` with Go's wording, which the command
  turns into one FATAL line and exit 1;
* `null` is the zero value (a nameless topic or channel, which the loader
  logs as invalid and skips; `false`; no channels);
* keys match case-insensitively, a later duplicate wins, unknown keys are
  ignored.

The result is plain data: `[TopicMeta(name, paused, [ChannelMeta(...)])]`.
"""
from __future__ import annotations

import json
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from .gojson import Pairs, go_kind


class MetadataError(RuntimeError):
    """nsqd.dat cannot be loaded (the node must not start)."""


class ChannelMeta(NamedTuple):
    name: str
    paused: bool


class TopicMeta(NamedTuple):
    name: str
    paused: bool
    channels: List[ChannelMeta]


class _TypeError(Exception):
    """Go's UnmarshalTypeError: the first one found is the load's error."""


def decode(raw: bytes, path: str) -> List[TopicMeta]:
    """The topics and channels of an nsqd.dat; MetadataError where nsqd 1.3.0 would fail.

    An empty file fails too, as in nsqd 1.3.0 (only a missing one is a fresh start).
    """
    try:
        doc = json.loads(raw, object_pairs_hook=Pairs)
    except json.JSONDecodeError as e:
        # an empty or cut-short file: Go's words for it
        reason = "unexpected end of JSON input" if e.pos >= len(raw.rstrip()) else str(e)
        raise MetadataError("failed to parse metadata in %s - %s" % (path, reason)) from None
    except (ValueError, RecursionError) as e:
        raise MetadataError("failed to parse metadata in %s - %s" % (path, e)) from None
    try:
        return _metadata(doc)
    except _TypeError as e:
        raise MetadataError("failed to parse metadata in %s - json: %s" % (path, e)) from None




def _mismatch(value: Any, where: str, go_type: str) -> _TypeError:
    return _TypeError("cannot unmarshal %s into %s of type %s" % (go_kind(value), where, go_type))


def _fields(obj: Pairs, setters: Dict[str, Callable[[Any], None]]) -> None:
    for key, value in obj:
        setter = setters.get(key.lower())
        if setter is not None:
            setter(value)


def _string(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _mismatch(value, where, "string")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _mismatch(value, where, "bool")
    return value


def _list(value: Any, where: str, go_type: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, Pairs) or not isinstance(value, list):
        raise _mismatch(value, where, go_type)
    return value


def _struct(value: Any, where: str, go_type: str) -> Optional[Pairs]:
    if value is None:
        return None
    if not isinstance(value, Pairs):
        raise _mismatch(value, where, go_type)
    return value


def _metadata(doc: Any) -> List[TopicMeta]:
    obj = _struct(doc, "Go value", "nsqd.Metadata")
    topics: List[TopicMeta] = []
    if obj is None:
        return topics

    def set_topics(value: Any) -> None:
        topics[:] = [_topic(t) for t in _list(value, "Go struct field Metadata.topics", "[]nsqd.TopicMetadata")]

    def set_version(value: Any) -> None:
        _string(value, "Go struct field Metadata.version")

    _fields(obj, {"topics": set_topics, "version": set_version})
    return topics


def _topic(value: Any) -> TopicMeta:
    obj = _struct(value, "Go struct field Metadata.topics", "nsqd.TopicMetadata")
    state: Dict[str, Any] = {"name": "", "paused": False, "channels": []}
    if obj is not None:
        _fields(obj, {
            "name": lambda v: state.__setitem__("name", _string(v, "Go struct field TopicMetadata.topics.name")),
            "paused": lambda v: state.__setitem__("paused", _bool(v, "Go struct field TopicMetadata.topics.paused")),
            "channels": lambda v: state.__setitem__("channels", [
                _channel(c) for c in _list(v, "Go struct field TopicMetadata.topics.channels",
                                           "[]nsqd.ChannelMetadata")]),
        })
    return TopicMeta(state["name"], state["paused"], state["channels"])


def _channel(value: Any) -> ChannelMeta:
    obj = _struct(value, "Go struct field TopicMetadata.topics.channels", "nsqd.ChannelMetadata")
    state: Dict[str, Any] = {"name": "", "paused": False}
    if obj is not None:
        where = "Go struct field ChannelMetadata.topics.channels."
        _fields(obj, {
            "name": lambda v: state.__setitem__("name", _string(v, where + "name")),
            "paused": lambda v: state.__setitem__("paused", _bool(v, where + "paused")),
        })
    return ChannelMeta(state["name"], state["paused"])
