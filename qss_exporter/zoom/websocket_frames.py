"""Zoom WebSocket frames -> typed frames; the event inside a `message` frame -> a typed record.

Pure: no I/O, no clock. Zoom does not document the envelope (REFERENCE.md §5); the shapes below are
what community clients rely on, and every variant they report is accepted:

* `{"module":"build_connection","success":true|false,"content":...}`: the first frame. `success`
  may be a boolean or the string "true"/"false"; a frame without it counts as success (as ZoomNet
  reads it). `content` may carry an error text.
* `{"module":"heartbeat", ...}`: the answer to our heartbeat, whatever else it carries.
* `{"module":"message","content":"<event JSON as a string>"}`: the event, double-encoded; a
  `content` that is already an object, or encoded twice, is accepted too.
* Any frame other than a message whose `content` says the token is invalid or expired (ZoomNet
  reacts to `"Invalid Token"`), or a build_connection that fails with such a text: `TokenRefused`.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from qss_exporter.zoom.events import Decoded, decode

__all__ = [
    "HEARTBEAT",
    "BuildConnection",
    "EventMessage",
    "Frame",
    "Heartbeat",
    "MalformedFrame",
    "OtherFrame",
    "TokenRefused",
    "parse_frame",
]

HEARTBEAT = '{"module":"heartbeat"}'  # what the client sends every heartbeat interval


@dataclass(frozen=True, slots=True)
class BuildConnection:
    """Zoom's answer to the connection; `detail` is its `content` text (shortened), if any."""

    success: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Zoom's answer to a heartbeat."""


@dataclass(frozen=True, slots=True)
class EventMessage:
    """An event frame; `event` is what the webhook path would have decoded from the same body."""

    event: Decoded


@dataclass(frozen=True, slots=True)
class TokenRefused:
    """Zoom says the access token is invalid or expired (at connect time or later)."""

    module: str
    detail: str


@dataclass(frozen=True, slots=True)
class OtherFrame:
    """A well-formed frame of a module this version does not know (counted, then ignored)."""

    module: str


@dataclass(frozen=True, slots=True)
class MalformedFrame:
    """Not a frame we can read; `reason` says why (`not_json`, `not_object`, `module`, `content`)."""

    reason: str


Frame = BuildConnection | Heartbeat | EventMessage | TokenRefused | OtherFrame | MalformedFrame

_DETAIL_CHARS = 200


def parse_frame(data: str | bytes) -> Frame:
    """Classify one received WebSocket message (text or binary). Never raises."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError:
        return MalformedFrame("not_json")
    if not isinstance(frame, dict):
        return MalformedFrame("not_object")
    module = frame.get("module")
    if not isinstance(module, str) or not module:
        return MalformedFrame("module")
    if module == "message":
        return _message(frame.get("content"))
    detail = _detail(frame.get("content"))
    success = _success(frame.get("success"))
    if _says_token_refused(detail) and (success is not True or module != "build_connection"):
        return TokenRefused(module, detail)
    if module == "build_connection":
        return BuildConnection(success is not False, detail)
    if module == "heartbeat":
        return Heartbeat()
    return OtherFrame(module)


def _message(content: object) -> Frame:
    # Documented: the event JSON as a string. Tolerated: an object, or a string encoded twice.
    for _ in range(2):
        if not isinstance(content, str | bytes):
            break
        try:
            content = orjson.loads(content)
        except orjson.JSONDecodeError:
            return MalformedFrame("content")
    if not isinstance(content, dict):
        return MalformedFrame("content")
    return EventMessage(decode(content))


def _success(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def _detail(content: object) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content[:_DETAIL_CHARS]
    try:
        return orjson.dumps(content).decode()[:_DETAIL_CHARS]
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254 levels): no text worth showing
        return ""


def _says_token_refused(detail: str) -> bool:
    text = detail.lower()
    return "token" in text and any(word in text for word in ("invalid", "expired", "expire"))
