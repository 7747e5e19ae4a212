"""The typed fast path (zoom/typed.py) and the tolerant decoder agree, record for record, on every body.

For any body: either the fast path declines (None) and the tolerant decoder decides, or both give equal
records (values, parse errors, unmeasured fields, identity and the content-based dedupe key). A body
that is not JSON for orjson is never a record for the fast path.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qss_exporter.demo.simulator import Simulator, default_accounts
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import InvalidEvent, QosRecord
from qss_exporter.zoom.typed import decode_body, decode_typed
from tests.samples import SAMPLES, load_sample
from tests.test_fuzz_model import FUZZ, json_values, mutated_samples

REALTIME = ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos")


def _agree(body: bytes) -> QosRecord | None:
    """Check both paths on `body`; the fast path's record (None when it declined)."""
    fast = decode_typed(body)
    try:
        envelope = orjson.loads(body)
    except orjson.JSONDecodeError:
        assert fast is None, body[:200]
        with pytest.raises(orjson.JSONDecodeError):
            decode_body(body)
        return None
    tolerant = decode(envelope)
    if fast is not None:
        assert fast == tolerant, body[:400]
        assert isinstance(tolerant, QosRecord)
        assert fast.dedupe_key == tolerant.dedupe_key
    assert decode_body(body) == tolerant
    return fast


def _dumps(value: Any) -> bytes | None:
    try:
        return orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):  # integers past 64 bits, nesting orjson will not write
        return None


def test_every_sample_agrees_and_real_time_samples_take_the_fast_path() -> None:
    for path in sorted(SAMPLES.glob("*.json")):
        body = path.read_bytes()
        fast = _agree(body)
        if path.stem in REALTIME:
            assert fast is not None, path.stem
            assert fast.streams
        else:
            assert fast is None, path.stem


def test_the_simulator_mix_takes_the_fast_path_record_for_record() -> None:
    simulator = Simulator(default_accounts(), size=300, seed=5, start=time.time() - 86_400)
    bodies = [event.body for event in simulator.advance(180) if event.event in REALTIME]
    assert len(bodies) > 500
    for body in bodies:
        assert _agree(body) is not None


@FUZZ
@given(mutated_samples())
def test_mutated_samples_agree(value: Any) -> None:
    body = _dumps(value)
    if body is not None:
        _agree(body)


@FUZZ
@given(json_values)
def test_arbitrary_json_agrees(value: Any) -> None:
    body = _dumps(value)
    if body is not None:
        _agree(body)


@FUZZ
@given(st.sampled_from(REALTIME), st.data())
def test_raw_byte_edits_of_a_real_time_sample_agree(name: str, data: st.DataObject) -> None:
    """Bytes inserted, removed or replaced anywhere: what orjson refuses the fast path never accepts."""
    body = bytearray((SAMPLES / f"{name}.json").read_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(body)))
        cut = data.draw(st.integers(0, 4))
        body[at : at + cut] = data.draw(st.binary(max_size=6) | st.sampled_from([b'"', b"\\u", b"\\ud800", b"1e999"]))
    _agree(bytes(body))


def _details(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    details: dict[str, Any] = body["payload"]["object"]["participant"]["qos"][index]["details"]
    return details


def _edited(edit: str) -> bytes:
    body = load_sample("meeting.participant_qos")
    qos = body["payload"]["object"]["participant"]["qos"]
    text = orjson.dumps(body)
    if edit == "duplicate_value_key":  # the last of two equal keys wins, in both
        return text.replace(b'"bitrate":', b'"bitrate":"1 kbps","bitrate":', 1)
    if edit == "duplicate_event_key":
        return text.replace(b'"event":', b'"event":"meeting.ended","event":', 1)
    if edit == "encoded_surrogate_in_an_unread_key":  # not UTF-8: orjson refuses the body, msgspec would not look
        return text.replace(b'"event":', b'"zzz":"\xed\xa0\x80","event":', 1)
    if edit == "bad_utf8_in_an_unread_key":
        return text.replace(b'"event":', b'"zzz":"\xff","event":', 1)
    if edit == "non_ascii_name":
        return text.replace(b'"email":', '"user_name":"Zo\u00eb \u6771\u4eac","email":'.encode(), 1)
    if edit.startswith("nesting_"):  # an unread key's value, nested as deep as orjson allows and deeper
        depth = int(edit.removeprefix("nesting_"))
        return text.replace(b'"event":', b'"zzz":' + b"[" * depth + b"]" * depth + b',"event":', 1)
    if edit == "huge_integer":
        return text.replace(b'"event_ts":', b'"event_ts":123456789012345678901234567890,"x":', 1)
    if edit == "u64_integer":
        _details(body)["bitrate"] = 2**64 - 1
    elif edit == "boolean_value":
        _details(body)["latency"] = True
    elif edit == "nested_quality":
        qos.append({"type": "video_quality", "details": {"quality": {"quality": "good"}}})
    elif edit == "null_avg_rssi_after_rssi":
        qos.append({"type": "as_quality", "details": {"avg_rssi": None}})
    elif edit == "null_quality":
        _details(body, 1)["quality"] = None
    elif edit == "integer_values":
        _details(body).update({"latency": 12, "jitter": 3.5, "avg_loss": 0})
    elif edit == "repeated_type":
        qos.append(dict(qos[0]))
    elif edit == "too_many_entries":
        qos.extend({"type": f"new_type_{n}", "details": {}} for n in range(70))
    elif edit == "numeric_ids":
        body["payload"]["object"]["participant"] |= {"user_id": 16778240, "participant_user_id": 7}
    elif edit == "missing_id":
        del body["payload"]["object"]["participant"]["user_id"]
    elif edit == "empty_uuid":
        body["payload"]["object"]["uuid"] = ""
    elif edit == "date_time_number":
        qos[0]["date_time"] = 1_700_000_000
    elif edit == "unknown_keys_everywhere":
        body["extra"] = {"deep": [[[{"x": 1}]]]}
        qos[0]["extra"] = [1, 2, {"bitrate": "1 kbps"}]
        _details(body)["min_bitrate"] = {"odd": True}
    return orjson.dumps(body)


EDITS = [
    "nesting_100",
    "nesting_1000",
    "nesting_5000",
    "encoded_surrogate_in_an_unread_key",
    "bad_utf8_in_an_unread_key",
    "non_ascii_name",
    "duplicate_value_key",
    "duplicate_event_key",
    "huge_integer",
    "u64_integer",
    "boolean_value",
    "nested_quality",
    "null_avg_rssi_after_rssi",
    "null_quality",
    "integer_values",
    "repeated_type",
    "too_many_entries",
    "numeric_ids",
    "missing_id",
    "empty_uuid",
    "date_time_number",
    "unknown_keys_everywhere",
]
# The edits the fast path reads itself; the others it leaves to the tolerant decoder.
FAST = {
    "nesting_100",
    "non_ascii_name",
    "duplicate_value_key",
    "null_avg_rssi_after_rssi",
    "null_quality",
    "integer_values",
    "repeated_type",
    "numeric_ids",
    "date_time_number",
    "unknown_keys_everywhere",
}


@pytest.mark.parametrize("edit", EDITS)
def test_odd_shapes_agree_and_only_the_readable_ones_go_fast(edit: str) -> None:
    body = _edited(edit)
    fast = _agree(body)
    assert (fast is not None) == (edit in FAST), edit
    if "utf8" in edit or "surrogate" in edit or edit == "nesting_5000":
        with pytest.raises(orjson.JSONDecodeError):  # answered 400 by the webhook, as before
            decode_body(body)
        return
    decoded = decode_body(body)
    if edit == "non_ascii_name":
        assert isinstance(decoded, QosRecord)
        assert decoded.identity.name == "Zo\u00eb \u6771\u4eac"
    if edit == "missing_id":
        assert decoded == InvalidEvent("meeting.participant_qos", "user_id")
    if edit == "too_many_entries":
        entries = len(orjson.loads(body)["payload"]["object"]["participant"]["qos"])
        assert isinstance(decoded, QosRecord)
        assert decoded.parse_errors.count(("qos", "too_many_entries")) == entries - 64
    if edit == "duplicate_value_key":
        original = decode(load_sample("meeting.participant_qos"))
        assert isinstance(decoded, QosRecord)
        assert isinstance(original, QosRecord)
        assert decoded.streams == original.streams
    if edit == "null_avg_rssi_after_rssi":
        assert isinstance(decoded, QosRecord)
        assert decoded.rssi_dbm is None


_values = (
    st.none()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.from_regex(r" ?-?[0-9]{1,20}(\.[0-9]{1,4})? ?(ms|kbps|Kbps|%|fps|dBm|x)?", fullmatch=True)
    | st.sampled_from(["", "0", "0 ms", "0*0", "1280*720", "good", " Poor ", "dbm", "-64", "0.0%"])
)


@FUZZ
@given(st.sampled_from(REALTIME), st.data())
def test_real_time_samples_with_any_values_agree(name: str, data: st.DataObject) -> None:
    """Every value of every entry replaced, kept, dropped or nulled: the fast path reads them all itself."""
    body = load_sample(name)
    person = body["payload"]["object"]["user" if name.startswith("session") else "participant"]
    for entry in person["qos"]:
        details = entry["details"]
        for key in [*details, *data.draw(st.lists(st.sampled_from(["quality", "avg_rssi", "rssi_unit"]), max_size=2))]:
            action = data.draw(st.sampled_from(["replace", "replace", "keep", "delete"]))
            if action == "replace":
                details[key] = data.draw(_values)
            elif action == "delete":
                details.pop(key, None)
        if data.draw(st.booleans()):
            entry["type"] = data.draw(
                st.sampled_from(["audio_input", "video_quality", "cpu_usage", "wifi_rssi", "notification"])
            )
    text = _dumps(body)
    if text is not None:
        _agree(text)


def test_ids_are_shared_between_events_on_both_paths() -> None:
    """Per-participant tables key on these: one copy per participant, not one per event (bench/memory.py)."""
    body = (SAMPLES / "meeting.participant_qos.json").read_bytes()
    for read in (decode_typed, lambda text: decode(orjson.loads(text))):
        first, second = read(body), read(bytes(body))
        assert isinstance(first, QosRecord)
        assert isinstance(second, QosRecord)
        assert first.account_id is second.account_id
        assert first.instance is second.instance
        assert first.participant_id is second.participant_id
