"""Fuzzing the decoder and the metric model: arbitrary JSON, and Zoom's samples with arbitrary substitutions at
any path, depth and size, through `decode`, the account check, `Pipeline.ingest`, the webhook receiver and
the /metrics renderer. Nothing may raise, every value observed must be plausible, every label bounded.

CI runs a few hundred inputs per target (a few seconds). The long run documented in docs/security.md:

    QSS_FUZZ_EXAMPLES=20000 .venv/bin/pytest -p no:cacheprovider -q tests/test_fuzz_model.py
"""

from __future__ import annotations

import asyncio
import copy
import math
import os
import re
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.outputs.prometheus import render
from qss_exporter.zoom.events import PARSE_ERRORS, decode
from qss_exporter.zoom.records import (
    InvalidEvent,
    MeetingEvent,
    ParticipantInfo,
    PhoneQosRecord,
    QosRecord,
    SummaryRecord,
    UnknownEvent,
    UrlValidation,
)
from qss_exporter.zoom.signature import sign
from qss_exporter.zoom.values import FIELDS
from qss_exporter.zoom.vocabulary import DATA_CENTERS
from tests.conftest import ACCOUNT_ID, OTHER_SECRET, SECRET, SESSION_ACCOUNT_ID, base_config, merge
from tests.samples import SAMPLES, load_sample

EXAMPLES = int(os.environ.get("QSS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=EXAMPLES <= 100,  # CI: the same inputs every run; a long run explores
)
EVENT_SAMPLES = [
    load_sample(path.stem)
    for path in sorted(SAMPLES.glob("*.json"))
    if re.match(r"(meeting|webinar|session|phone|endpoint)\.", path.stem) and not path.stem.endswith("response")
]
PARSE_ERROR_SET = set(PARSE_ERRORS)
RECORDS = (QosRecord, SummaryRecord, ParticipantInfo, PhoneQosRecord, MeetingEvent)
ACCOUNTS = {"acme", "acme-health", "SUB-DECLARED"}
LABEL_VALUE = re.compile(r"[A-Za-z0-9_.\-]{1,63}")

# --------------------------------------------------------------------------------------- inputs

_unit_strings = st.from_regex(r"[ -]?-?[0-9]{1,400}(\.[0-9]{1,6})? ?(ms|kbps|Kbps|%|fps|dBm)?", fullmatch=True)
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.integers(min_value=10**4000, max_value=10**4400)  # more digits than int -> str allows
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | _unit_strings
    | st.sampled_from(["good", "Bad", "caller", "sending", "audio_input", "cpu_usage", "1280*720", "0*0"])
)
_keys = st.text(max_size=10) | st.sampled_from([*FIELDS, "type", "details", "qos", "quality", "resolution", "id"])
json_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=40,
)


def _nested(depth: int, leaf: Any, key: str) -> Any:
    value = leaf
    for level in range(depth):
        value = {key: value} if level % 2 else [value]
    return value


deep_values = st.builds(_nested, st.integers(1, 5_000), json_values, st.sampled_from(["quality", "qos", "details"]))


def _slots(node: Any, limit: int = 400) -> list[tuple[Any, Any]]:
    """The (container, key) places inside a sample where a substitution can go: breadth first, bounded
    (an earlier mutation may have made it thousands deep or wide)."""
    found: list[tuple[Any, Any]] = []
    queue = [node]
    while queue and len(found) < limit:
        current = queue.pop(0)
        items = (
            current.items() if isinstance(current, dict) else enumerate(current) if isinstance(current, list) else ()
        )
        for key, value in items:
            found.append((current, key))
            queue.append(value)
            if len(found) >= limit:
                break
    return found


@st.composite
def mutated_samples(draw: st.DrawFn) -> Any:
    """A Zoom sample with one to four substitutions, deletions, nestings or multiplications at any path."""
    body = copy.deepcopy(draw(st.sampled_from(EVENT_SAMPLES)))
    body["event_ts"] = int(time.time() * 1000)
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(body)
        if not slots:  # every key was deleted
            break
        container, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "deep", "multiply"]))
        if action == "replace":
            container[key] = draw(json_values)
        elif action == "delete" and isinstance(container, dict):
            del container[key]
        elif action == "deep":  # the last mutation: nothing is walked below thousands of levels
            container[key] = _nested(draw(st.integers(2, 3_000)), container[key], str(key))
            break
        elif action == "multiply":  # the same object many times (the decoder never mutates its input); the
            container[key] = [container[key]] * draw(st.sampled_from([2, 100, 5_000]))
            break  # last mutation too: repeating a repetition would make an example's repr gigabytes long
    return body


# ------------------------------------------------------------------------------------ the checks


@pytest.fixture(scope="module")
def agent() -> Agent:
    config = merge(
        base_config(),
        {
            "labels": {"data_center": True, "client_os": True, "client_version": True},
            "detail": {
                "enabled": True,
                "hash_key": "fuzz-hash-key",
                "worst": {"participants": 5, "meetings": 2},
                "plain": {"meeting_number": True, "topic": True, "participant_name": True},
            },
        },
    )
    config["accounts"][0] |= {"sub_accounts": ["SUB-DECLARED"]}
    return Agent(config_from_mapping(config))


def _plausible(kind: str, value: float | None) -> bool:
    if value is None:
        return True
    _, low, high = FIELDS[kind]
    return math.isfinite(value) and low <= value <= high


def _check_values(record: Any) -> None:
    for stream in getattr(record, "streams", ()):
        if isinstance(record, QosRecord):
            pairs = zip(
                ("bitrate", "latency", "jitter", "avg_loss", "max_loss", "frame_rate"), stream[3:9], strict=True
            )
            assert stream.height is None or 0 < stream.height <= 8640
        else:
            names = ("avg_bitrate", "max_bitrate", "avg_latency", "max_latency", "avg_jitter", "max_jitter")
            pairs = zip((*names, "avg_loss", "max_loss"), stream[3:], strict=True)
        assert all(_plausible(kind, value) for kind, value in pairs), stream
    for grade in getattr(record, "grades", ()):
        assert _plausible("quality_score", grade.score)
    for sample in getattr(record, "samples", ()):
        kinds = ("mos", "network_delay", "jitter", "avg_loss", "max_loss", "bitrate")
        assert all(_plausible(kind, value) for kind, value in zip(kinds, sample[3:], strict=True)), sample
    cpu = getattr(record, "cpu", None)
    if cpu is not None:
        assert all(_plausible("zoom_avg_cpu_usage", value) for value in cpu)
    assert _plausible("avg_rssi", getattr(record, "rssi_dbm", None))
    assert set(getattr(record, "parse_errors", ())) <= PARSE_ERROR_SET


def _feed(agent: Agent, value: Any) -> None:
    decoded = decode(value)
    pipeline = agent.pipeline
    if isinstance(decoded, InvalidEvent):
        assert (decoded.field, "malformed") in PARSE_ERROR_SET
        pipeline.count_parse_error(decoded.field)
        return
    if isinstance(decoded, UrlValidation | UnknownEvent):
        return
    assert isinstance(decoded, RECORDS)
    _check_values(decoded)
    for speakers in (("acme",), ("acme-health",)):
        if pipeline.accounts.check(speakers, decoded.account_id) is None:
            pipeline.ingest(decoded, "webhook")
            return
    assert pipeline.account_label(decoded.account_id) is None


@FUZZ
@given(json_values | deep_values)
def test_arbitrary_json_at_any_depth(agent: Agent, value: Any) -> None:
    _feed(agent, value)
    _feed(agent, {"event": "meeting.participant_qos", "payload": value})
    _feed(agent, {"event": "phone.call_qos", "payload": {"account_id": ACCOUNT_ID, "object": value}})


@FUZZ
@given(mutated_samples())
def test_zoom_samples_with_arbitrary_substitutions(agent: Agent, body: Any) -> None:
    _feed(agent, body)


async def _post(agent: Agent, body: bytes, secret: str) -> tuple[int, bytes]:
    stamp = str(int(time.time()))
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"x-zm-request-timestamp", stamp.encode()),
        (b"x-zm-signature", sign(secret, stamp, body).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/zoom/webhook",
        "raw_path": b"/zoom/webhook",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    await agent.receiver(scope, receive, send)
    return sent[0]["status"], b"".join(message.get("body", b"") for message in sent[1:])


def _encodable(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return None  # deeper than orjson writes, or an int beyond 64 bits: not a body anyone can send


@FUZZ
@given(st.one_of(mutated_samples(), json_values, st.binary(max_size=200)), st.sampled_from([SECRET, OTHER_SECRET]))
def test_the_webhook_answers_every_signed_body_with_a_documented_status(agent: Agent, value: Any, secret: str) -> None:
    body = value if isinstance(value, bytes) else _encodable(value)
    if body is None:
        return
    status, reply = asyncio.run(_post(agent, body, secret))
    assert status in (200, 400, 403, 413), (status, reply)
    assert len(reply) < 300  # a short answer, whatever was sent


def test_after_fuzzing_every_label_is_bounded_and_the_exposition_parses(agent: Agent) -> None:
    text = render(agent.store).decode()
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert math.isfinite(sample.value) or sample.labels.get("le") == "+Inf", sample
            for name, value in sample.labels.items():
                values.setdefault(name, set()).add(value)
    assert values["account"] <= ACCOUNTS
    assert values.get("data_center", set()) <= DATA_CENTERS | {"other", "unknown"}
    assert all(v in ("other", "unknown") or re.fullmatch(r"\d{1,2}\.\d{1,2}", v) for v in values["client_version"])
    for name in ("network_type", "client_os", "media", "direction", "path", "product", "quality", "notification"):
        assert all(LABEL_VALUE.fullmatch(value) for value in values.get(name, ())), name
    for name in ("topic", "participant_name", "meeting_number"):
        assert all(len(value) <= 200 and value.isprintable() for value in values.get(name, ())), name
    assert {(labels["field"], labels["reason"]) for labels in _parse_error_labels(text)} == PARSE_ERROR_SET
    assert SESSION_ACCOUNT_ID not in values["account"]  # ids are never labels unless declared


def _parse_error_labels(text: str) -> list[dict[str, str]]:
    return [
        sample.labels
        for family in text_string_to_metric_families(text)
        if family.name == "zoom_qss_parse_errors"
        for sample in family.samples
    ]
