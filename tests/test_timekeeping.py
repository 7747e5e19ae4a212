"""Issue 12 point 2: time in quality that does not depend on Zoom's cadence.

Zoom's "Quality of Service Subscription Explainer" (library.zoom.com) says real-time QoS arrives
"Approx. 1 event per minute, per participant (per QoS metric or aggregated set depending on account
settings)"; an older version of the same page says QSS sends raw QoS data "at 4 to 6 times per
minute" ("Frequency: 4 to 6x per minute, per participant"). Counting records weighs a participant by
their cadence; `zoom_qss_media_time_seconds_total` and `zoom_qss_quality_time_seconds_total` credit
each record with the spacing to the participant's previous record (qss_exporter/timekeeping.py).

Tolerance: at any regular cadence the totals are exact (n records stand for n intervals; the first
record's interval is the spacing to the second). At irregular spacing a total is off by at most one
spacing per change of content (the first record's interval is estimated from the spacing after it,
and a grade change falls somewhere inside one spacing): the tests state that bound.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import gc
import math
import random
import sys
import time
import tracemalloc
from array import array
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from qss_exporter.timekeeping import Content, Timekeeper
from tests.conftest import SECRET, AgentFactory, base_config, parse_metrics, total
from tests.process import AgentProcess
from tests.samples import load_sample

AUDIO: Content = ((("acme", "meeting", "audio", "input", "client"),), ())
VIDEO: Content = ((("acme", "meeting", "video", "input", "client"),), ())


class Sink:
    def __init__(self) -> None:
        self.seconds: defaultdict[Content, float] = defaultdict(float)

    def __call__(self, seconds: float, content: Content, when: float) -> None:
        assert seconds >= 0.0
        self.seconds[content] += seconds


def keeper(window: float = 180.0) -> tuple[Timekeeper, Sink]:
    sink = Sink()
    return Timekeeper(sink, window), sink


@pytest.mark.parametrize("per_minute", [1, 2, 4, 5, 6])
def test_ten_minutes_are_600_seconds_at_any_regular_cadence(per_minute: int) -> None:
    timekeeper, sink = keeper()
    spacing = 60.0 / per_minute
    for n in range(1, 10 * per_minute + 1):
        timekeeper.record("p", n * spacing, n * spacing + 3.0, AUDIO)
    assert sink.seconds[AUDIO] == pytest.approx(600.0)


def test_irregular_spacing_is_within_one_spacing() -> None:
    rng = random.Random(7)
    timekeeper, sink = keeper()
    at, times = 0.0, []
    while at < 590.0:
        at += rng.uniform(8.0, 20.0)  # "4 to 6 times per minute", unevenly
        times.append(min(at, 600.0))
    for moment in times:
        timekeeper.record("p", moment, moment + 1.0, AUDIO)
    largest = max(b - a for a, b in zip([0.0, *times], times, strict=False))
    assert abs(sink.seconds[AUDIO] - 600.0) <= largest


def test_one_event_per_qos_type_shares_the_interval() -> None:
    """Per-metric delivery: audio and video of the same minute arrive as two events with one time."""
    timekeeper, sink = keeper()
    for minute in range(1, 11):
        at = minute * 60.0
        timekeeper.record("p", at, at + 1, AUDIO)
        timekeeper.record("p", at + 0.4, at + 1, VIDEO)  # a few hundred ms apart: still one time
    assert sink.seconds == {AUDIO: 600.0, VIDEO: 600.0}


def test_a_lone_record_stands_for_a_minute_when_the_participant_leaves_or_expires() -> None:
    timekeeper, sink = keeper()
    timekeeper.record("left", 60.0, 61.0, AUDIO)
    assert sink.seconds[AUDIO] == 0.0  # held until a second record or the end
    timekeeper.end("left")
    assert sink.seconds[AUDIO] == 60.0
    timekeeper.record("quiet", 60.0, 61.0, VIDEO)
    assert timekeeper.expire(100.0) == 0
    assert timekeeper.expire(300.0) == 2  # both participants' state goes with the activity window
    assert sink.seconds[VIDEO] == 60.0
    assert len(timekeeper) == 0


def test_a_silence_is_capped() -> None:
    timekeeper, sink = keeper(window=3600.0)
    for at in (60.0, 120.0, 720.0, 780.0):  # ten minutes without records in the middle
        timekeeper.record("p", at, at, AUDIO)
    assert sink.seconds[AUDIO] == 60.0 + 60.0 + 120.0 + 60.0


def test_a_lost_record_is_covered_by_the_next_and_its_retry_adds_nothing() -> None:
    timekeeper, sink = keeper(window=3600.0)
    for at in (60.0, 120.0, 240.0, 300.0):  # 180 lost ...
        timekeeper.record("p", at, at, AUDIO)
    timekeeper.record("p", 180.0, 480.0, AUDIO)  # ... and retried by Zoom 5 minutes later
    assert sink.seconds[AUDIO] == 300.0


def test_retries_after_a_delivery_gap_recover_the_time_the_cap_cut() -> None:
    timekeeper, sink = keeper(window=3600.0)
    for at in (60.0, 120.0, 360.0, 420.0):  # 180, 240, 300 failed (503) ...
        timekeeper.record("p", at, at, AUDIO)
    assert sink.seconds[AUDIO] == 60 + 60 + 120 + 60
    for at in (180.0, 240.0, 300.0):  # ... and come back as retries, after newer records
        timekeeper.record("p", at, at + 300.0, AUDIO)
    assert sink.seconds[AUDIO] == 420.0


def test_a_late_record_older_than_every_held_time_counts_only_if_nothing_was_forgotten() -> None:
    timekeeper, sink = keeper(window=3600.0)
    for at in (120.0, 180.0):
        timekeeper.record("p", at, at, AUDIO)
    timekeeper.record("p", 60.0, 400.0, AUDIO)  # the real first record, retried: it becomes the first
    assert sink.seconds[AUDIO] == 180.0
    for minute in range(4, 20):  # more than the eight times held: the oldest are forgotten
        timekeeper.record("p", minute * 60.0, minute * 60.0, AUDIO)
    before = sink.seconds[AUDIO]
    timekeeper.record("p", 30.0, 1200.0, AUDIO)
    assert sink.seconds[AUDIO] == before


def test_a_participant_back_after_leaving_starts_a_new_presence() -> None:
    timekeeper, sink = keeper(window=3600.0)
    for at in (60.0, 120.0):
        timekeeper.record("p", at, at, AUDIO)
    timekeeper.end("p")
    for at in (900.0, 960.0):
        timekeeper.record("p", at, at, AUDIO)
    assert sink.seconds[AUDIO] == 240.0  # the 13 minutes away are not presence
    timekeeper.record("p", 90.0, 1000.0, AUDIO)  # a late record of the first presence fills nothing
    assert sink.seconds[AUDIO] == 240.0


def test_a_retry_after_the_state_expired_is_a_lone_record() -> None:
    """The last record of a participant, delivered only by Zoom's retry 5 minutes later: its minute counts."""
    timekeeper, sink = keeper(window=180.0)
    for at in (60.0, 120.0):
        timekeeper.record("p", at, at, AUDIO)
    timekeeper.expire(400.0)
    timekeeper.record("p", 180.0, 480.0, AUDIO)
    timekeeper.expire(1000.0)
    assert (sink.seconds[AUDIO], len(timekeeper)) == (180.0, 0)


# ------------------------------------------------------------------------- through the real agent


def minute_of(participant: str, at: float, quality: str, product: str = "meeting") -> dict[str, Any]:
    """A real-time record of `participant` made at `at` (event_ts and date_time), audio graded `quality`."""
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    if product == "webinar":
        body["event"] = "webinar.participant_qos"
    person = body["payload"]["object"]["participant"]
    person["user_id"] = participant
    stamp = _iso(at)
    person["qos"] = [
        {"date_time": stamp, "type": "audio_input", "details": {"bitrate": "40 kbps", "latency": "38 ms"}},
        {"date_time": stamp, "type": "audio_quality", "details": {"quality": quality, "quality_score": "3.9"}},
    ]
    body["event_ts"] = int(at * 1000)
    return body


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ten_minutes(
    participant: str, start: float, spacings: list[float], product: str = "meeting"
) -> list[dict[str, Any]]:
    """Records spaced by `spacings` from `start`: audio good, except poor from minute 5 to minute 8."""
    bodies, at = [], start
    for spacing in spacings:
        at += spacing
        offset = at - start
        bodies.append(minute_of(participant, at, "poor" if 300.0 < offset <= 480.0 else "good", product))
    return bodies


CADENCES = {"1/min": [60.0] * 10, "4/min": [15.0] * 40, "6/min": [10.0] * 60}


async def test_agent_time_in_quality_is_the_same_at_1_4_and_6_records_a_minute(start_agent: AgentFactory) -> None:
    running = await start_agent()
    start = math.floor(running.clock()) - 3600.0  # an hour ago: every record is in the past
    for name, spacings in CADENCES.items():
        for body in ten_minutes(f"p-{name}", start, spacings):
            assert (await running.post(body)).status_code == 200
    samples = await running.scrape()
    # Three participants, ten minutes each, whatever their cadence.
    assert total(samples, "zoom_qss_media_time_seconds_total", media="audio", direction="input") == 3 * 600
    assert total(samples, "zoom_qss_quality_time_seconds_total", media="audio", quality="good") == 3 * 420
    assert total(samples, "zoom_qss_quality_time_seconds_total", media="audio", quality="poor") == 3 * 180
    # The record counters still count records: 10 + 40 + 60.
    assert total(samples, "zoom_qss_media_records_total", media="audio", direction="input") == 110
    assert total(samples, "zoom_qss_media_latency_seconds_count", media="audio", direction="input") == 110


async def test_agent_time_at_irregular_spacing_is_within_one_spacing(start_agent: AgentFactory) -> None:
    running = await start_agent()
    rng = random.Random(12)
    spacings: list[float] = []
    while sum(spacings) < 585:
        spacings.append(float(rng.randint(9, 16)))
    spacings.append(600.0 - sum(spacings))
    start = math.floor(running.clock()) - 3600.0
    for body in ten_minutes("irregular", start, spacings):
        assert (await running.post(body)).status_code == 200
    samples = await running.scrape()
    largest = max(spacings)
    assert abs(total(samples, "zoom_qss_media_time_seconds_total", media="audio") - 600) <= largest
    assert abs(total(samples, "zoom_qss_quality_time_seconds_total", quality="good") - 420) <= 2 * largest
    assert abs(total(samples, "zoom_qss_quality_time_seconds_total", quality="poor") - 180) <= 2 * largest


async def test_a_lone_record_is_credited_when_the_summary_ends_the_participant(start_agent: AgentFactory) -> None:
    running = await start_agent()
    record = load_sample("meeting.participant_qos")
    assert (await running.post(record)).status_code == 200
    assert total(await running.scrape(), "zoom_qss_media_time_seconds_total") == 0  # waits for a spacing
    summary = load_sample("meeting.participant_qos_summary")
    summary["payload"]["object"]["participant"]["participant_id"] = record["payload"]["object"]["participant"][
        "user_id"
    ]
    summary["payload"]["object"]["uuid"] = record["payload"]["object"]["uuid"]
    assert (await running.post(summary)).status_code == 200
    samples = await running.scrape()
    assert total(samples, "zoom_qss_media_time_seconds_total") == 4 * 60  # four active streams, a minute each
    assert total(samples, "zoom_qss_quality_time_seconds_total") == 2 * 60


async def test_time_through_the_agent_process(tmp_path: Path) -> None:
    agent = await asyncio.to_thread(AgentProcess, tmp_path, base_config())
    try:
        start = math.floor(time.time()) - 1800.0
        for name, spacings in {"one": [60.0] * 3, "four": [15.0] * 12, "six": [10.0] * 18}.items():
            for body in ten_minutes(name, start, spacings, product="webinar"):
                response = await asyncio.to_thread(agent.post_signed, orjson.dumps(body), SECRET)
                assert response.status_code == 200
        samples = parse_metrics(await asyncio.to_thread(agent.scrape_text))
        assert total(samples, "zoom_qss_media_time_seconds_total", product="webinar", media="audio") == 3 * 180
        assert total(samples, "zoom_qss_quality_time_seconds_total", product="webinar", quality="good") == 3 * 180
        assert total(samples, "zoom_qss_media_records_total", product="webinar") == 3 + 12 + 18
        assert agent.process.poll() is None
    finally:
        await asyncio.to_thread(agent.kill)


def test_a_participant_s_times_cost_under_190_bytes_with_their_table_slots() -> None:
    """bench/memory.py's 10k case holds ~10k of these: each participant's record times are one packed
    bytes object, ~85 bytes (an `array` was ~150, with its over-allocated buffer).
    Measured by file:line, growth of the participants' table from 5k to 10k participants (the free lists
    of the interpreter and the other tests' leftovers do not count)."""
    sink = Sink()
    keeper = Timekeeper(sink, 600.0)
    keys = [("acme", "meeting", f"instance-{n // 10}", f"participant-{n}") for n in range(10_000)]

    def participants(chosen: list[tuple[str, str, str, str]]) -> None:
        for minute in range(12):  # past `keep` (8) times: the oldest go
            for key in chosen:
                keeper.record(key, 1_000.0 + 60 * minute, 1_000.0 + 60 * minute, AUDIO)

    participants(keys[:5_000])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        participants(keys[5_000:])
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(inclusive=True, filename_pattern="*/qss_exporter/timekeeping.py")]
    grown = sum(stat.size_diff for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno"))
    assert grown / 5_000 < 190, grown / 5_000  # ~160 (the dicts grown to 10k included); ~230 with arrays
    assert sink.seconds[AUDIO] == pytest.approx(10_000 * 12 * 60.0)  # still credited whole


def test_times_hinted_by_other_replicas_release_the_held_first_record_and_space_the_next() -> None:
    timekeeper, sink = keeper()
    timekeeper.hint("other", [940, 1000], 1_000.0)  # a participant first seen elsewhere: nothing credited here
    timekeeper.record("p", 1_000.0, 1_003.0, AUDIO)  # held: a first time
    timekeeper.hint("p", [1_060, 1_001], 1_061.0)  # 1_001 is the same time as 1_000
    assert sink.seconds[AUDIO] == pytest.approx(60.0)  # the held record's spacing came from elsewhere
    timekeeper.record("p", 1_120.0, 1_121.0, VIDEO)
    assert sink.seconds[VIDEO] == pytest.approx(60.0)  # spaced from the hinted time
    timekeeper.record("other", 1_060.0, 1_061.0, AUDIO)
    assert sink.seconds[AUDIO] == pytest.approx(120.0)
    timekeeper.hint("p", list(range(200, 1_000, 60)), 1_122.0)  # more than `keep`: the oldest are forgotten
    timekeeper.record("p", 100.0, 1_123.0, AUDIO)  # older than what is held, which forgot older times
    assert sink.seconds[AUDIO] == pytest.approx(120.0)


def test_a_snapshot_comes_back_whole_and_one_of_the_older_layout_too() -> None:
    timekeeper, sink = keeper(window=600.0)
    timekeeper.record("stays", 1_000.0, 1_001.0, AUDIO)
    timekeeper.record("stays", 1_060.0, 1_061.0, AUDIO)
    timekeeper.record("left", 1_000.0, 1_001.0, VIDEO)
    timekeeper.record("left", 1_060.0, 1_061.0, VIDEO)
    timekeeper.end("left")
    timekeeper.record("lone", 1_030.0, 1_031.0, AUDIO)  # held
    saved = copy.deepcopy(timekeeper.snapshot())
    older = {  # before the times came first: [arrival, forgot, left, times...]
        "byteorder": sys.byteorder,
        "keys": ["stays", "left", "lone"],
        "times": [
            array("I", (1_061, 0, 0, 1_000, 1_060)).tobytes(),
            array("I", (1_061, 0, 1, 1_000, 1_060)).tobytes(),
            array("I", (1_031, 0, 0, 1_030)).tobytes(),
        ],
        "held_keys": ["lone"],
        "held": [[AUDIO]],
    }
    for data in (saved, older):
        restored, credited = keeper(window=600.0)
        restored.restore(data)
        restored.record("stays", 1_120.0, 1_121.0, AUDIO)  # 60 s after the restored newest time
        restored.record("left", 1_050.0, 1_122.0, VIDEO)  # a late record of the presence that ended
        restored.record("left", 1_500.0, 1_501.0, VIDEO)  # back: a new presence, held
        restored.record("lone", 1_090.0, 1_123.0, AUDIO)  # the held first record is spaced now
        assert credited.seconds[AUDIO] == pytest.approx(60.0 + 2 * 60.0)
        assert credited.seconds[VIDEO] == pytest.approx(0.0)
        assert restored.expire(1_750.0) == 2  # arrivals kept: `stays` and `lone` last arrived at 1_121-1_123
        assert len(restored) == 1
    assert sink.seconds[VIDEO] == pytest.approx(120.0)


def test_the_table_of_held_first_records_shrinks_after_a_burst_of_joins() -> None:
    keys = [f"participant-{n}" for n in range(20_000)]
    tracemalloc.start()  # before the tables are made: what they free is seen
    try:
        timekeeper, sink = keeper(window=600.0)
        for key in keys:  # everyone's first record, at once (the hour's meetings starting)
            timekeeper.record(key, 1_000.0, 1_001.0, AUDIO)
        for key in keys:
            timekeeper.record(key, 1_060.0, 1_061.0, AUDIO)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        assert timekeeper.expire(1_090.0) == 0
        gc.collect()
        freed = before - tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert freed > 20_000 * 20  # the held records' table (~40 bytes a participant) went with them
    assert sink.seconds[AUDIO] == pytest.approx(20_000 * 2 * 60.0)
