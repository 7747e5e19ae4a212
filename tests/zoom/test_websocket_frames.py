"""zoom/websocket_frames.py: every frame variant REFERENCE.md §5 and the community clients describe."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, SummaryRecord, UnknownEvent
from qss_exporter.zoom.websocket_frames import (
    HEARTBEAT,
    BuildConnection,
    EventMessage,
    Frame,
    Heartbeat,
    MalformedFrame,
    OtherFrame,
    TokenRefused,
    parse_frame,
)
from tests.samples import load_sample, sample_path


def test_the_shared_samples() -> None:
    assert parse_frame(sample_path("ws.build_connection").read_bytes()) == BuildConnection(True, "")
    assert parse_frame(sample_path("ws.heartbeat").read_bytes()) == Heartbeat()
    assert json.loads(HEARTBEAT) == load_sample("ws.heartbeat")
    frame = parse_frame(sample_path("ws.message").read_bytes())
    assert isinstance(frame, EventMessage)
    assert isinstance(frame.event, SummaryRecord)
    # Exactly what the webhook path decodes from the same body.
    assert frame.event == decode(load_sample("meeting.participant_qos_summary"))


def _message(content: Any) -> str:
    return json.dumps({"module": "message", "content": content})


BODY = load_sample("meeting.participant_qos_summary")
EVENT = decode(BODY)

CASES: list[tuple[str, str | bytes, Frame]] = [
    ("build_connection ok", '{"module":"build_connection","success":true,"content":""}', BuildConnection(True, "")),
    ("build_connection string true", '{"module":"build_connection","success":"TRUE"}', BuildConnection(True, "")),
    ("build_connection without success", '{"module":"build_connection"}', BuildConnection(True, "")),
    (
        "build_connection failed",
        '{"module":"build_connection","success":false,"content":"no such subscription"}',
        BuildConnection(False, "no such subscription"),
    ),
    (
        "build_connection string false",
        '{"module":"build_connection","success":"false","content":{"code":4}}',
        BuildConnection(False, '{"code":4}'),
    ),
    (
        "build_connection invalid token",
        '{"module":"build_connection","success":false,"content":"Invalid Token"}',
        TokenRefused("build_connection", "Invalid Token"),
    ),
    (
        "heartbeat says token expired",
        '{"module":"heartbeat","success":false,"content":"token expired"}',
        TokenRefused("heartbeat", "token expired"),
    ),
    (
        "any module says invalid token",
        '{"module":"notice","content":"Invalid Token"}',
        TokenRefused("notice", "Invalid Token"),
    ),
    ("heartbeat ack", '{"module":"heartbeat"}', Heartbeat()),
    ("heartbeat ack with extras", '{"module":"heartbeat","success":true,"content":"pong"}', Heartbeat()),
    ("message, content a string", _message(json.dumps(BODY)), EventMessage(EVENT)),
    ("message, content an object", _message(BODY), EventMessage(EVENT)),
    ("message, content encoded twice", _message(json.dumps(json.dumps(BODY))), EventMessage(EVENT)),
    ("message as bytes", _message(json.dumps(BODY)).encode(), EventMessage(EVENT)),
    ("message, not an event", _message('{"hello":1}'), EventMessage(InvalidEvent("", "event"))),
    ("message, unknown event", _message('{"event":"x.y","payload":{}}'), EventMessage(UnknownEvent("x.y"))),
    ("message, content not JSON", _message("{broken"), MalformedFrame("content")),
    ("message, content a number", _message(7), MalformedFrame("content")),
    ("message, no content", '{"module":"message"}', MalformedFrame("content")),
    ("unknown module", '{"module":"notice","content":"maintenance at 02:00"}', OtherFrame("notice")),
    ("not JSON", "hello", MalformedFrame("not_json")),
    ("binary garbage", b"\x00\xff\xfe", MalformedFrame("not_json")),
    ("JSON array", "[1]", MalformedFrame("not_object")),
    ("no module", '{"content":"x"}', MalformedFrame("module")),
    ("module not a string", '{"module":1}', MalformedFrame("module")),
    ("empty module", '{"module":""}', MalformedFrame("module")),
]


@pytest.mark.parametrize(("data", "expected"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_parse_frame(data: str | bytes, expected: Frame) -> None:
    assert parse_frame(data) == expected


def test_long_content_is_shortened() -> None:
    frame = parse_frame(json.dumps({"module": "build_connection", "success": False, "content": "x" * 5000}))
    assert frame == BuildConnection(False, "x" * 200)


def test_a_frame_whose_content_is_nested_too_deep_to_re_encode_is_still_classified() -> None:
    deep: object = "x"
    for _ in range(600):
        deep = {"a": deep}
    frame = parse_frame(json.dumps({"module": "heartbeat", "content": deep}))
    assert frame == Heartbeat()
