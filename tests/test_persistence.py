"""The pipeline's state over a restart (issue 13 point 1): the file, its bad variants, and the running agent."""

from __future__ import annotations

import copy
import math
import os
import signal
import subprocess
import sys
import time
from array import array
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qss_exporter.config import config_from_mapping
from qss_exporter.core import build_core
from qss_exporter.persistence import FILE_NAME, MAGIC, SCHEMA, StateError, StateFamilies, StateFile, decode, encode
from qss_exporter.store import Store
from qss_exporter.timekeeping import LAYOUT
from qss_exporter.zoom.events import decode as decode_event
from tests.conftest import SECRET, base_config, merge, parse_metrics, total
from tests.process import AgentProcess
from tests.samples import load_sample
from tests.test_timekeeping import minute_of

PARTICIPANT = "16782336"  # the data sample's participant (site leeds, network wifi)


def data_event(at: float) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_data"))
    body["event_ts"] = int(at * 1000)
    return body


def state_config(directory: Path, interval: float) -> dict[str, Any]:
    return merge(base_config(), {"state": {"dir": str(directory / "state"), "checkpoint_interval_seconds": interval}})


# ------------------------------------------------------------------------------------------ the file


def test_a_file_round_trips() -> None:
    parts = {"a": {"x": (1, 2, b"\x00\x01"), "y": (("k", "l"), 1.5, None)}}  # arrays come back as tuples
    assert decode(encode(parts, 12.5)) == {"written": 12.5, "version": decode(encode({}, 0))["version"], "parts": parts}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "foreign"),
        (b"SQLite format 3\x00" + b"\x00" * 100, "foreign"),
        (MAGIC + b"\x00\x00", "corrupt"),
        (encode({"a": {}}, 1.0)[:-3], "corrupt"),
        (MAGIC + (SCHEMA + 1).to_bytes(4, "big") + encode({}, 1.0)[len(MAGIC) + 4 :], "newer"),
    ],
)
def test_a_file_that_is_not_ours_or_damaged_is_refused_with_its_reason(data: bytes, reason: str) -> None:
    with pytest.raises(StateError) as raised:
        decode(data)
    assert raised.value.reason == reason


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_damage_is_refused_or_harmless(data: st.DataObject) -> None:
    original = encode({"enrichment": {"entries": [["acct", "inst", "p", 1.0, ["wifi"]]]}}, 5.0)
    position = data.draw(st.integers(0, len(original) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda byte: byte != original[position]))
    damaged = original[:position] + bytes([value]) + original[position + 1 :]
    cut = data.draw(st.integers(0, len(damaged)))
    outcome: object
    try:
        outcome = decode(damaged[:cut])
    except StateError as error:
        outcome = error.reason
    # Only a damaged schema number that is still ours and older passes: the body is intact.
    assert outcome in ("foreign", "corrupt", "newer", decode(original))


def test_the_dedupe_digest_is_the_same_in_every_process() -> None:
    """Python's `hash` is salted per process; the dedupe history is saved as digests that must match."""
    body = orjson.dumps(minute_of(PARTICIPANT, 1_700_000_000.0, "good"))
    script = (
        "import sys, orjson\n"
        "from qss_exporter.dedupe import digest\n"
        "from qss_exporter.zoom.events import decode\n"
        "print(digest(decode(orjson.loads(sys.stdin.buffer.read())).dedupe_key))\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            input=body,
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2", "random")
    }
    assert len(digests) == 1


# ------------------------------------------------------------------------------------- the parts


def ingest(core: Any, body: dict[str, Any], at: float) -> bool:
    core.store.now = at
    record = decode_event(body)
    return bool(core.pipeline.ingest(record, "webhook"))


def test_every_part_comes_back_in_a_new_pipeline() -> None:
    now = math.floor(time.time())
    mapping = merge(base_config(), {"detail": {"enabled": True, "hash_key": "k" * 32, "allowlist": ["x@example.com"]}})
    clock = [float(now)]
    first = build_core(config_from_mapping(mapping), lambda: clock[0])
    assert ingest(first, data_event(now - 120), now - 120)
    minute = minute_of(PARTICIPANT, now - 120, "good")
    assert ingest(first, minute, now - 119)
    assert ingest(first, minute_of(PARTICIPANT, now - 60, "good"), now - 59)
    saved = decode(encode({name: part.snapshot() for name, part in first.pipeline.stateful().items()}, now))

    second = build_core(config_from_mapping(mapping), lambda: clock[0])
    for name, part in second.pipeline.stateful().items():
        part.restore(saved["parts"][name])
    pipeline = second.pipeline
    labels = second.directory.lookup("Xq3vTn0bR8aL5mWcY2kPzQ", "kT9w2Qx+Rj6pLm0sVbN4hA==", PARTICIPANT)
    assert dict(zip(second.directory.labels, labels, strict=True))["site"] == "leeds"
    assert not ingest(second, minute, now)  # a retry of a record counted before: a duplicate
    assert not ingest(second, data_event(now - 120), now)
    active = pipeline.participants.count_by_labels(float(now))
    assert [sample.value for sample in active] == [1.0]
    assert "leeds" in active[0].labels
    assert ingest(second, minute_of(PARTICIPANT, now, "good"), now)  # the next minute: 60 s, not held
    assert second.pipeline.time.snapshot()["held"] == []  # the restored participant had two times already


def test_labelled_parts_are_not_restored_when_the_enrichment_labels_changed(tmp_path: Path) -> None:
    now = float(math.floor(time.time()))
    first = build_core(config_from_mapping(base_config()), lambda: now)
    ingest(first, data_event(now - 60), now - 60)
    ingest(first, minute_of(PARTICIPANT, now - 60, "good"), now - 59)
    saved = decode(encode({name: part.snapshot() for name, part in first.pipeline.stateful().items()}, now))
    changed = merge(base_config(), {"labels": {"network_type": False}})
    second = build_core(config_from_mapping(changed), lambda: now)
    state = StateFile(tmp_path, second.pipeline.stateful, second.directory.labels, 60.0, second.state_families)
    assert state.apply(saved) == "restored"
    assert second.pipeline.participants.count_by_labels(now) == []  # activity had the old label width
    labels = second.directory.lookup("Xq3vTn0bR8aL5mWcY2kPzQ", "kT9w2Qx+Rj6pLm0sVbN4hA==", PARTICIPANT)
    assert second.directory.labels == ("site",)
    assert dict(zip(second.directory.labels, labels, strict=True))["site"] == "leeds"


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"not a state file", "foreign"), (b"", "foreign"), (None, "corrupt"), (None, "newer")],
)
def test_a_bad_file_is_set_aside_and_reported(tmp_path: Path, content: bytes | None, reason: str) -> None:
    good = encode({"enrichment": {"labels": [], "entries": [], "versions": {}}}, 1.0)
    if content is None:
        content = good[:-1] if reason == "corrupt" else MAGIC + (SCHEMA + 1).to_bytes(4, "big") + good[len(MAGIC) + 4 :]
    (tmp_path / FILE_NAME).write_bytes(content)
    (tmp_path / (FILE_NAME + ".tmp")).write_bytes(b"half a write")
    state = StateFile(tmp_path, dict, [], 60.0, StateFamilies.register(Store(1000, time.time)))
    assert state.read() == (reason, None)
    assert not (tmp_path / FILE_NAME).exists()
    assert not (tmp_path / (FILE_NAME + ".tmp")).exists()
    aside = [path for path in tmp_path.iterdir() if path.name.startswith(f"{FILE_NAME}.{reason}-")]
    assert len(aside) == 1
    assert aside[0].read_bytes() == content  # renamed, never deleted


def test_a_second_agent_on_the_same_directory_does_not_write_it(tmp_path: Path) -> None:
    families = StateFamilies.register(Store(1000, time.time))
    first, second = (StateFile(tmp_path, dict, [], 60.0, families) for _ in range(2))
    assert first.open()
    assert not second.open()
    first.close()
    assert second.open()
    second.close()


# ------------------------------------------------------------------------------------ the running agent


def post(agent: AgentProcess, body: dict[str, Any]) -> None:
    response = agent.post_signed(orjson.dumps(body), SECRET)
    assert response.status_code == 200


def wait_for_checkpoint_after(agent: AgentProcess, moment: float) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if total(parse_metrics(agent.scrape_text()), "zoom_qss_state_last_checkpoint_timestamp_seconds") > moment:
            return
        time.sleep(0.1)
    raise AssertionError("no checkpoint")


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_a_restarted_agent_remembers_the_meeting_in_progress(tmp_path: Path, stop: str) -> None:
    """Mid-meeting restart: enrichment labels survive, a retry counts once, active gauges and time resume."""
    # SIGTERM: the last save at shutdown (no checkpoint would come within the test); SIGKILL: the checkpoint.
    config = state_config(tmp_path, 3600.0 if stop == "SIGTERM" else 1.0)
    start = math.floor(time.time()) - 120.0
    minute2 = minute_of(PARTICIPANT, start + 60, "good")
    with AgentProcess(tmp_path, config) as agent:
        post(agent, data_event(start))
        post(agent, minute_of(PARTICIPANT, start, "good"))
        post(agent, minute2)
        before = parse_metrics(agent.scrape_text())
        assert total(before, "zoom_qss_active_participants", site="leeds", network_type="wifi") == 1
        assert total(before, "zoom_qss_media_time_seconds_total", media="audio", site="leeds") == 120
        if stop == "SIGTERM":
            assert agent.terminate(timeout=10) == 0
            assert "restored" not in agent.log_text()
        else:
            wait_for_checkpoint_after(agent, time.time())
            agent.process.send_signal(signal.SIGKILL)
            agent.process.wait(timeout=10)
    with AgentProcess(tmp_path, config) as agent:
        after = parse_metrics(agent.scrape_text())
        # The active gauges resume at once, with the participant's enrichment labels.
        assert total(after, "zoom_qss_active_participants", site="leeds", network_type="wifi") == 1
        assert total(after, "zoom_qss_active_meetings", product="meeting") == 1
        assert total(after, "zoom_qss_enrichment_participants") == 1
        assert total(after, "zoom_qss_state_restore", outcome="restored") == 1
        post(agent, minute2)  # Zoom's retry of a record delivered before the restart
        post(agent, minute_of(PARTICIPANT, start + 120, "poor"))  # the next minute
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
        assert total(samples, "zoom_qss_media_records_total", media="audio") == 1
        # Enriched: the data event came before the restart, never again.
        assert total(samples, "zoom_qss_media_records_total", media="audio", site="leeds", network_type="wifi") == 1
        # The new minute stands for the 60 s since the one before the restart (not held as a first record).
        assert total(samples, "zoom_qss_media_time_seconds_total", media="audio", site="leeds") == 60
        assert total(samples, "zoom_qss_quality_time_seconds_total", quality="poor", site="leeds") == 60
        assert agent.process.poll() is None


def test_an_agent_starts_empty_beside_a_corrupt_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE_NAME).write_bytes(encode({"enrichment": {}}, 1.0)[:-5])
    with AgentProcess(tmp_path, state_config(tmp_path, 3600.0)) as agent:
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_state_restore", outcome="corrupt") == 1
        assert total(samples, "zoom_qss_state_restore", outcome="restored") == 0
        assert f"{FILE_NAME} is corrupt" in agent.log_text()
        post(agent, minute_of(PARTICIPANT, time.time() - 10, "good"))
        assert total(parse_metrics(agent.scrape_text()), "zoom_qss_media_records_total", media="audio") == 1
        assert agent.terminate(timeout=10) == 0
    names = sorted(path.name for path in state.iterdir())
    assert FILE_NAME in names  # written at shutdown
    assert any(name.startswith(f"{FILE_NAME}.corrupt-") for name in names)


@pytest.mark.parametrize("plain", [False, True])
def test_detail_context_survives_and_stays_hashed_on_disk(plain: bool) -> None:
    now = float(math.floor(time.time()))
    detail = {"enabled": True, "hash_key": "k" * 32, "worst": {"meetings": 5}}
    detail["plain"] = {"meeting_number": plain, "topic": plain}
    mapping = merge(base_config(), {"detail": detail})
    started = {
        "event": "meeting.started",
        "event_ts": int(now * 1000),
        "payload": {
            "account_id": "Xq3vTn0bR8aL5mWcY2kPzQ",
            "object": {"uuid": "kT9w2Qx+Rj6pLm0sVbN4hA==", "id": 81234567890, "topic": "Board review"},
        },
    }
    first = build_core(config_from_mapping(mapping), lambda: now)
    assert ingest(first, started, now)
    meeting = next(iter(first.detail.context.meetings.values()))  # type: ignore[union-attr]
    data = encode({name: part.snapshot() for name, part in first.pipeline.stateful().items()}, now)
    assert (b"81234567890" in data) is plain
    assert (b"Board review" in data) is plain
    second = build_core(config_from_mapping(mapping), lambda: now)
    for name, part in second.pipeline.stateful().items():
        part.restore(decode(data)["parts"][name])
    restored = next(iter(second.detail.context.meetings.values()))  # type: ignore[union-attr]
    assert restored.label == meeting.label  # the hash of the meeting number, not of the instance
    assert restored.topic == ("Board review" if plain else "")
    assert not ingest(second, started, now)  # its redelivery is a duplicate


def test_a_restored_label_value_a_data_event_could_not_give_is_unknown() -> None:
    """The file is input: a value outside today's label sets (a forged file, a site since removed) is not taken."""
    mapping = merge(base_config(), {"labels": {"data_center": True, "client_os": True, "client_version": True}})
    core = build_core(config_from_mapping(mapping), time.time)
    directory = core.directory
    assert directory.labels == ("network_type", "site", "data_center", "client_os", "client_version")
    good = ("wifi", "leeds", "FR", "windows", "6.2")
    forged = ('evil"} 1\n', "atlantis", "XX", "amiga", "6.2.5.41632")
    keys = [("a", "i", "good"), ("a", "i", "forged")]
    directory.restore(
        {"labels": list(directory.labels), "keys": keys, "entries": [(1.0, good), (1.0, forged)], "versions": {}}
    )
    assert directory.lookup("a", "i", "good") == good
    assert directory.lookup("a", "i", "forged") == ("unknown",) * 5


def schema_1(parts: dict[str, Any], participant: tuple[str, str, str]) -> dict[str, Any]:
    """The parts as a schema 1 agent wrote them: history keyed by ids, (time, labels) and (updated, values) pairs,
    each participant's times after their arrival and flags (the layout of schemas 1 and 2)."""
    old = copy.deepcopy(parts)
    time_part = old["time"]
    assert time_part.pop("layout") == LAYOUT
    older = []
    for packed in time_part["times"]:
        state = array("I", packed)
        *times, arrival, flags = state
        older.append(array("I", (arrival, flags & 1, flags >> 1 & 1, *times)).tobytes())
    time_part["times"] = older
    assert len(old["history"]["keys"]) == 1
    old["history"]["keys"] = [participant]
    for name in ("participants", "calls"):
        part = old[name]
        part["seen"] = list(zip(part.pop("at"), part.pop("labels"), strict=True))
    enrichment = old["enrichment"]
    enrichment["entries"] = list(zip(enrichment.pop("updated"), enrichment.pop("values"), strict=True))
    return old


def test_a_schema_1_file_is_taken_back_by_the_running_agent(tmp_path: Path) -> None:
    """The saved layout of history, activity and enrichment changed in schema 2, the time part's in 3: an older
    file still restores."""
    start = math.floor(time.time()) - 120.0
    clock = [start]
    core = build_core(config_from_mapping(base_config()), lambda: clock[0])
    minute2 = minute_of(PARTICIPANT, start + 60, "good")
    for body, at in (
        (data_event(start), start),
        (minute_of(PARTICIPANT, start, "good"), start + 1),
        (minute2, start + 61),
    ):
        clock[0] = at
        assert ingest(core, body, at)
    parts = {name: part.snapshot() for name, part in core.pipeline.stateful().items()}
    old = schema_1(parts, ("Xq3vTn0bR8aL5mWcY2kPzQ", "kT9w2Qx+Rj6pLm0sVbN4hA==", PARTICIPANT))
    assert "seen" in old["participants"]
    assert "entries" in old["enrichment"]
    file = encode(old, start + 61)
    state = tmp_path / "state"
    state.mkdir()
    (state / FILE_NAME).write_bytes(MAGIC + (1).to_bytes(4, "big") + file[len(MAGIC) + 4 :])
    assert SCHEMA == 3
    with AgentProcess(tmp_path, state_config(tmp_path, 3600.0)) as agent:
        after = parse_metrics(agent.scrape_text())
        assert total(after, "zoom_qss_state_restore", outcome="restored") == 1
        assert total(after, "zoom_qss_active_participants", site="leeds", network_type="wifi") == 1
        assert total(after, "zoom_qss_enrichment_participants") == 1
        post(agent, minute2)  # Zoom's retry of a record the older agent counted
        post(agent, minute_of(PARTICIPANT, start + 120, "poor"))
        samples = parse_metrics(agent.scrape_text())
        assert total(samples, "zoom_qss_webhook_requests_total", outcome="duplicate") == 1
        assert total(samples, "zoom_qss_media_records_total", media="audio", site="leeds", network_type="wifi") == 1
        assert total(samples, "zoom_qss_media_time_seconds_total", media="audio", site="leeds") == 60
        assert agent.process.poll() is None
