"""Signed events of any shape get a documented 4xx or a counted 200: never a 5xx, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.adversarial.conftest import delta, post, qos_event, scrape
from tests.process import AgentProcess


def _nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = {"quality": leaf}
    return leaf


def _entries(body: dict[str, Any]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = body["payload"]["object"]["participant"]["qos"]
    return entries


def deep_quality(body: dict[str, Any]) -> None:
    # 900 levels: about as deep as a JSON body can be (the parser's limit is 1024).
    entry = next(e for e in _entries(body) if e["type"] == "audio_quality")
    entry["details"]["quality"] = _nested(900, "good")


def type_is_an_object(body: dict[str, Any]) -> None:
    _entries(body).append({"type": {"audio_input": True}, "details": {"bitrate": "1 kbps"}})


def details_is_a_list(body: dict[str, Any]) -> None:
    _entries(body).append({"type": "as_output", "details": ["bitrate", "63 kbps"]})


def huge_values(body: dict[str, Any]) -> None:
    details = _entries(body)[0]["details"]
    details["latency"] = "9" * 400_000 + " ms"  # a 400 kB value
    details["jitter"] = 1e300


def huge_resolution(body: dict[str, Any]) -> None:
    _entries(body)[2]["details"]["resolution"] = "1*" + "9" * 5000


# (what is odd, how, the status, the (field, reason) counted, participant-minutes still recorded)
SHAPES: list[tuple[str, Callable[[dict[str, Any]], None], int, tuple[str, str] | None, int]] = [
    ("quality nested 900 deep", deep_quality, 200, ("quality", "unparsable"), 4),
    ("an object as a type name", type_is_an_object, 200, ("type", "malformed"), 4),
    ("a list as details", details_is_a_list, 200, ("details", "malformed"), 4),
    ("a 400 kB value and 1e300", huge_values, 200, ("latency", "out_of_range"), 4),
    ("a 5000-digit resolution", huge_resolution, 200, ("resolution", "out_of_range"), 4),
    (
        "a list as the participant",
        lambda b: b["payload"]["object"].update(participant=[1]),
        400,
        ("participant", "malformed"),
        0,
    ),
    ("an object as the uuid", lambda b: b["payload"]["object"].update(uuid={"a": 1}), 400, ("uuid", "malformed"), 0),
    (
        "a 1e30 participant id",
        lambda b: b["payload"]["object"]["participant"].update(user_id=1e30),
        400,
        ("user_id", "malformed"),
        0,
    ),
    ("a list as the event name", lambda b: b.update(event=["meeting.participant_qos"]), 400, ("event", "malformed"), 0),
]


@pytest.mark.parametrize(("odd", "mutate", "status", "error", "minutes"), SHAPES, ids=[s[0] for s in SHAPES])
def test_odd_shapes_are_answered_4xx_or_counted(
    shared_agent: AgentProcess,
    odd: str,
    mutate: Callable[[dict[str, Any]], None],
    status: int,
    error: tuple[str, str] | None,
    minutes: int,
) -> None:
    body = qos_event()
    mutate(body)
    before = scrape(shared_agent)
    response = post(shared_agent, body, secret="test-secret-token")
    after = scrape(shared_agent)
    assert response.status_code == status, response.text
    assert len(response.content) < 200  # a short answer: `{"error": "..."}` or nothing
    outcome = "accepted" if status == 200 else "malformed"
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome=outcome) == 1
    assert delta(before, after, "zoom_qss_webhook_requests_total", outcome="error") == 0
    if error is not None:
        field, reason = error
        assert delta(before, after, "zoom_qss_parse_errors_total", field=field, reason=reason) == 1
    # The valid parts of the event are all recorded: 4 active streams of the sample, each once.
    assert delta(before, after, "zoom_qss_media_records_total") == minutes


def test_bodies_deeper_than_json_allows_or_not_json_are_400(shared_agent: AgentProcess) -> None:
    deep = b'{"event":' + b"[" * 2000 + b"]" * 2000 + b"}"
    for body in (deep, b"\xff\xfe not json", b'{"event": "meeting.participant_qos", "payload": '):
        response = post(shared_agent, body, secret="test-secret-token")
        assert response.status_code == 400
        assert response.json() == {"error": "body is not JSON"}


def test_no_traceback_was_logged(shared_agent: AgentProcess) -> None:
    scrape(shared_agent)
    assert "Traceback" not in shared_agent.log_text()
