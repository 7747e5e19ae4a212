"""Detail mode end to end: signed webhooks into a real agent, per-meeting / per-participant series read back.

Time is the agent's injectable clock (`running.clock.advance`), housekeeping is called directly: no sleeps.
"""

from __future__ import annotations

import copy
import gc
import json
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest

from qss_exporter import detail as detail_module
from qss_exporter.cli import main
from qss_exporter.config import config_from_mapping
from qss_exporter.errors import ConfigError
from qss_exporter.identity import lookup
from qss_exporter.zoom.events import CONTEXT_EVENTS, KNOWN_EVENTS, decode
from qss_exporter.zoom.records import InvalidEvent, MeetingEvent, ParticipantIdentity, QosRecord, SummaryRecord
from tests.conftest import (
    ACCOUNT_ID,
    OTHER_SECRET,
    SECRET,
    AgentFactory,
    RunningAgent,
    Series,
    base_config,
    merge,
    parse_metrics,
    total,
)
from tests.process import AgentProcess
from tests.samples import SAMPLES, load_sample
from tests.test_e2e_webhook import _personal_values

KEY = "detail-test-key"
VIP_EMAIL = "Dana.Okafor@Example.com"
VIP_USER = "Fh2kLmN8QeWbT5cR1xYzAg"
MEETING_A = "kT9w2Qx+Rj6pLm0sVbN4hA=="
MEETING_B = "bB7yZq1+Wd3mKr8tXcL5nE=="
NUMBER_A = "84521736902"
TOPIC_A = "Quarterly numbers (confidential)"
DETAIL_LABELS = ("meeting", "participant", "meeting_number", "topic", "participant_name")
PARTICIPANT_FAMILIES = tuple(
    f"zoom_qss_participant_{name}"
    for name in ("latency", "jitter", "packet_loss", "bitrate", "quality_grade", "quality_score")
)
DETAIL_FAMILIES = (*PARTICIPANT_FAMILIES, "zoom_qss_meeting_", "zoom_qss_detail_")


def label(value: str) -> str:
    return lookup(KEY.encode(), value)


def detail(**overrides: Any) -> dict[str, Any]:
    return merge({"enabled": True, "hash_key": KEY}, overrides)


class _Clocked(Protocol):
    @property
    def clock(self) -> Callable[[], float]: ...


class _WallClock:
    """For bodies posted to an agent process: its clock is the wall clock."""

    clock = staticmethod(time.time)


def now_ms(running: _Clocked) -> int:
    return int(running.clock() * 1000)


def qos(
    running: _Clocked,
    participant: str,
    *,
    loss: str = "0.2%",
    uuid: str = MEETING_A,
    email: str = "",
    user_id: str = "",
    latency: str = "38 ms",
) -> dict[str, Any]:
    """The shared meeting.participant_qos sample for `participant`, now, with audio-input loss and latency."""
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos"))
    body["event_ts"] = now_ms(running)
    body["payload"]["object"]["uuid"] = uuid
    person = body["payload"]["object"]["participant"]
    person.update({"user_id": participant, "participant_user_id": user_id, "email": email})
    person["qos"][0]["details"].update({"avg_loss": loss, "latency": latency})
    return body


def summary(running: RunningAgent, participant: str, uuid: str = MEETING_A) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_qos_summary"))
    body["event_ts"] = now_ms(running)
    body["payload"]["object"]["uuid"] = uuid
    body["payload"]["object"]["participant"]["participant_id"] = participant
    return body


def data_summary(running: RunningAgent, participant: str, uuid: str = MEETING_A) -> dict[str, Any]:
    body: dict[str, Any] = copy.deepcopy(load_sample("meeting.participant_data_summary"))
    body["event_ts"] = now_ms(running)
    body["payload"]["object"]["uuid"] = uuid
    body["payload"]["object"]["participant"]["participant_id"] = participant
    return body


def meeting_event(
    running: RunningAgent, event: str, uuid: str = MEETING_A, participant: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An ordinary meeting event in Zoom's documented shape (meeting number as an integer, as Zoom sends it)."""
    obj: dict[str, Any] = {"uuid": uuid, "id": int(NUMBER_A), "host_id": "h0st", "topic": TOPIC_A, "type": 2}
    if participant is not None:
        obj["participant"] = participant
    return {"event": event, "event_ts": now_ms(running), "payload": {"account_id": ACCOUNT_ID, "object": obj}}


def person(participant: str, name: str = "Dana Okafor", email: str = VIP_EMAIL) -> dict[str, Any]:
    return {"user_id": participant, "user_name": name, "id": VIP_USER, "email": email, "participant_uuid": "x"}


async def post_all(running: RunningAgent, *bodies: dict[str, Any]) -> None:
    for body in bodies:
        response = await running.post(body)
        assert response.status_code == 200, response.text


def participants_shown(samples: Series) -> set[str]:
    return {
        dict(labels)["participant"] for (name, labels), _ in samples.items() if name.startswith(PARTICIPANT_FAMILIES)
    }


def meetings_shown(samples: Series) -> set[str]:
    return {dict(labels)["meeting"] for (name, labels), _ in samples.items() if name == "zoom_qss_meeting_participants"}


def housekeeping(running: RunningAgent) -> None:
    running.agent.pipeline.expire()


async def test_detail_off_exposes_no_meeting_or_participant_label_and_no_personal_value(
    start_agent: AgentFactory,
) -> None:
    running = await start_agent()
    data = copy.deepcopy(load_sample("meeting.participant_data"))
    data["event_ts"] = now_ms(running)
    await post_all(
        running,
        meeting_event(running, "meeting.started"),
        meeting_event(running, "meeting.participant_joined", participant=person("16782336")),
        data,
        qos(running, "16782336", email=VIP_EMAIL, user_id=VIP_USER),
        summary(running, "16782336"),
    )
    response = await running.scrape_text()
    text = response.text
    for name in DETAIL_LABELS:
        assert f'{name}="' not in text
    assert not any(family in text for family in DETAIL_FAMILIES)
    personal = [VIP_EMAIL.lower(), "dana.okafor@example.com", "Dana Okafor", VIP_USER, TOPIC_A, NUMBER_A, MEETING_A]
    personal += [data["payload"]["object"]["participant"]["data"][0].get("signaling_ip_address", "192.0.2.1")]
    for value in personal:
        assert value not in text, value
    assert running.agent.detail is None


async def test_meeting_events_are_accepted_counted_and_end_activity_at_leave(start_agent: AgentFactory) -> None:
    running = await start_agent()
    await post_all(
        running,
        meeting_event(running, "meeting.started"),
        meeting_event(running, "meeting.participant_joined", participant=person("1")),
        qos(running, "1"),
        qos(running, "2"),
    )
    samples = await running.scrape()
    assert total(samples, "zoom_qss_active_participants", account="acme") == 2
    await post_all(running, meeting_event(running, "meeting.participant_left", participant=person("1")))
    samples = await running.scrape()
    assert total(samples, "zoom_qss_active_participants", account="acme") == 1  # at once, no window to wait
    await post_all(running, meeting_event(running, "meeting.ended"))
    samples = await running.scrape()
    assert total(samples, "zoom_qss_active_participants", account="acme") == 0
    assert total(samples, "zoom_qss_active_meetings", account="acme") == 0
    for event in ("meeting.started", "meeting.participant_joined", "meeting.participant_left", "meeting.ended"):
        assert total(samples, "zoom_qss_events_total", source="webhook", event=event) == 1
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="unknown_event") == 0
    assert total(samples, "zoom_qss_webhook_requests_total", outcome="accepted") == 6
    # A late QoS minute of someone who left does not bring them back.
    await post_all(running, qos(running, "1"))
    assert total(await running.scrape(), "zoom_qss_active_participants", account="acme") == 0


async def test_allowlisted_and_worst_participants_appear_with_their_values_and_no_one_else(
    start_agent: AgentFactory,
) -> None:
    running = await start_agent(detail=detail(allowlist=[VIP_EMAIL], worst={"participants": 2, "meetings": 1}))
    # Meeting A: the VIP (good) and five others, loss 1-5 %; meeting B: three people with almost none.
    bodies = [qos(running, "vip", email="dana.okafor@example.com", user_id=VIP_USER, loss="0.1%")]
    bodies += [qos(running, f"a{n}", loss=f"{n}%", latency=f"{100 + n} ms") for n in range(1, 6)]
    bodies += [qos(running, f"b{n}", uuid=MEETING_B, loss="0.1%", email=f"b{n}@example.com") for n in range(3)]
    await post_all(running, *bodies)
    samples = await running.scrape()
    # The allowlist acts at once; the worst are ranked when the interval (a minute) has passed.
    assert participants_shown(samples) == {label(VIP_EMAIL)}
    running.clock.advance(61)
    housekeeping(running)
    samples = await running.scrape()
    worst = {label(f"{MEETING_A}/a5"), label(f"{MEETING_A}/a4")}  # guests: the hash of their per-meeting id
    assert participants_shown(samples) == {label(VIP_EMAIL), *worst}
    assert meetings_shown(samples) == {label(MEETING_A)}
    vip = {"meeting": label(MEETING_A), "participant": label(VIP_EMAIL), "media": "audio", "direction": "input"}
    assert total(samples, "zoom_qss_participant_packet_loss_ratio", **vip) == pytest.approx(0.001)
    assert total(samples, "zoom_qss_participant_latency_seconds", **vip) == pytest.approx(0.038)
    assert total(samples, "zoom_qss_participant_bitrate_bytes_per_second", **vip) == 41 * 125
    assert total(samples, "zoom_qss_participant_quality_grade", participant=label(VIP_EMAIL), media="video") == 3
    assert total(samples, "zoom_qss_participant_quality_score", participant=label(VIP_EMAIL), media="audio") == 4.12
    a5 = {"participant": label(f"{MEETING_A}/a5"), "media": "audio", "direction": "input", "path": "client"}
    assert total(samples, "zoom_qss_participant_packet_loss_ratio", **a5) == pytest.approx(0.05)
    assert total(samples, "zoom_qss_participant_latency_seconds", **a5) == pytest.approx(0.105)
    meeting = {"meeting": label(MEETING_A)}
    assert total(samples, "zoom_qss_meeting_participants", **meeting) == 6
    # Mean over 6 participants x 2 audio streams: input 0.1, 1..5 % and output 0 % each.
    expected_loss = (0.001 + 0.01 + 0.02 + 0.03 + 0.04 + 0.05) / 12
    assert total(samples, "zoom_qss_meeting_packet_loss_ratio", **meeting, media="audio") == pytest.approx(
        expected_loss
    )
    assert total(samples, "zoom_qss_detail_series") == 3 * 20 + detail_module.MEETING_SERIES
    text = (await running.scrape_text()).text
    for value in ("example.com", "Dana", VIP_USER, MEETING_A, MEETING_B, 'meeting_number="', 'topic="'):
        assert value not in text, value


async def test_worst_ranking_is_reevaluated_every_interval_and_drops_who_recovered(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(worst={"participants": 1, "interval_seconds": 60}))
    await post_all(running, qos(running, "p1", loss="5%"), qos(running, "p2", loss="1%"))
    running.clock.advance(60)
    housekeeping(running)
    assert participants_shown(await running.scrape()) == {label(f"{MEETING_A}/p1")}
    running.clock.advance(10)
    await post_all(running, qos(running, "p1", loss="0.1%"), qos(running, "p2", loss="8%"))
    samples = await running.scrape()
    assert participants_shown(samples) == {label(f"{MEETING_A}/p1")}  # within the interval: unchanged
    assert total(samples, "zoom_qss_participant_packet_loss_ratio", direction="input", media="audio") == 0.001
    running.clock.advance(50)
    housekeeping(running)
    assert participants_shown(await running.scrape()) == {label(f"{MEETING_A}/p2")}


def test_worst_ranking_runs_on_a_timer_after_a_burst_and_silence(tmp_path: Path) -> None:
    """Issue 12: the ranking ran on the next record or at the 30-second housekeeping, so after a burst and then
    silence the first participant processed was shown as the worst for a whole interval, here the best one."""
    config = base_config() | {"detail": detail(worst={"participants": 1, "interval_seconds": 1})}
    with AgentProcess(tmp_path, config) as agent:
        for name, loss in (("best", "0.1%"), ("worst", "6%"), ("middle", "2%")):
            assert agent.post_signed(json.dumps(qos(_WallClock(), name, loss=loss)).encode(), SECRET).status_code == 200
        history = []
        deadline = time.monotonic() + 5  # the interval is a second
        while time.monotonic() < deadline:
            history.append(participants_shown(parse_metrics(agent.scrape_text())))
            if history[-1] == {label(f"{MEETING_A}/worst")}:
                break
            time.sleep(0.05)
        assert history[-1] == {label(f"{MEETING_A}/worst")}, history
        assert not any(label(f"{MEETING_A}/best") in shown for shown in history)
        assert agent.process.poll() is None


async def test_worst_by_quality_ranks_the_lowest_zoom_score(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(worst={"participants": 1, "score": "quality", "interval_seconds": 1}))
    good, bad = qos(running, "good"), qos(running, "bad")
    bad["payload"]["object"]["participant"]["qos"][7]["details"].update({"quality": "poor", "quality_score": "2.1"})
    await post_all(running, good, bad)
    running.clock.advance(2)
    housekeeping(running)
    samples = await running.scrape()
    assert participants_shown(samples) == {label(f"{MEETING_A}/bad")}
    assert total(samples, "zoom_qss_participant_quality_grade", media="video") == 2


async def test_video_sdk_users_are_labelled_by_user_key_and_session(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(allowlist=["app-user-42"]))
    body: dict[str, Any] = copy.deepcopy(load_sample("session.user_qos"))
    body["event_ts"] = now_ms(running)
    body["payload"]["object"]["user"]["user_key"] = "app-user-42"
    session = body["payload"]["object"]["session_id"]
    await running.post(body, secret=OTHER_SECRET)
    samples = await running.scrape()
    assert participants_shown(samples) == {label("app-user-42")}
    assert total(samples, "zoom_qss_participant_latency_seconds", meeting=label(session), product="session") > 0
    text = (await running.scrape_text()).text
    assert body["payload"]["object"]["user"]["name"] not in text
    assert body["payload"]["object"]["session_name"] not in text


async def test_plain_fields_appear_only_when_opted_in_and_only_those(start_agent: AgentFactory) -> None:
    running = await start_agent(
        detail=detail(allowlist=[VIP_USER], worst={"meetings": 1, "interval_seconds": 1}, plain={"topic": True})
    )
    await post_all(
        running,
        meeting_event(running, "meeting.started"),
        meeting_event(running, "meeting.participant_joined", participant=person("vip")),
        qos(running, "vip", email="dana.okafor@example.com", user_id=VIP_USER),
    )
    running.clock.advance(2)
    housekeeping(running)
    samples = await running.scrape()
    # The meeting number came with meeting.started: the meeting label is what `lookup NUMBER` prints.
    shown = {"meeting": label(NUMBER_A), "participant": label(VIP_EMAIL), "topic": TOPIC_A}
    assert total(samples, "zoom_qss_participant_latency_seconds", **shown, media="audio", direction="input") == 0.038
    assert total(samples, "zoom_qss_meeting_participants", meeting=label("845 2173 6902"), topic=TOPIC_A) == 1
    text = (await running.scrape_text()).text
    assert 'meeting_number="' not in text
    assert 'participant_name="' not in text
    for value in ("example.com", "Dana Okafor", VIP_USER, NUMBER_A):
        assert value not in text, value


async def test_participant_name_comes_from_joined_events_when_opted_in(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(allowlist=[VIP_EMAIL], plain={"participant_name": True}))
    await post_all(
        running,
        meeting_event(running, "meeting.participant_joined", participant=person("vip", name="Dana O.")),
        qos(running, "vip", email=VIP_EMAIL),
    )
    samples = await running.scrape()
    assert total(samples, "zoom_qss_participant_quality_grade", participant_name="Dana O.", media="audio") == 4
    text = (await running.scrape_text()).text
    assert TOPIC_A not in text
    assert "example.com" not in text


async def test_the_cap_holds_under_a_flood_of_participants_and_counts_refusals(start_agent: AgentFactory) -> None:
    running = await start_agent(
        detail=detail(max_series=100, worst={"participants": 500, "meetings": 50, "interval_seconds": 1}),
        limits={"max_series": 100_000},
    )
    flood = [qos(running, f"p{n}", uuid=f"m{n % 40}", loss=f"{1 + n % 9}%") for n in range(300)]
    await post_all(running, *flood)
    running.clock.advance(2)
    housekeeping(running)
    samples = await running.scrape()
    exposed = sum(
        1 for (name, _), _ in samples.items() if name.startswith((*PARTICIPANT_FAMILIES, "zoom_qss_meeting_"))
    )
    exposed_participants = sum(1 for (name, _), _ in samples.items() if name.startswith(PARTICIPANT_FAMILIES))
    assert 0 < exposed <= 100
    assert total(samples, "zoom_qss_detail_series") <= 100
    assert exposed_participants == 100  # five participants of 20 series each fill the cap exactly
    assert total(samples, "zoom_qss_detail_series_refused_total", kind="participant") >= (300 - 5) * 20
    assert total(samples, "zoom_qss_detail_series_refused_total", kind="meeting") > 0
    assert total(samples, "zoom_qss_detail_tracked", kind="participants") == 300


def _detail_bytes(snapshot: tracemalloc.Snapshot) -> int:
    package = str(Path(detail_module.__file__).resolve().parent / "*")
    return sum(stat.size for stat in snapshot.filter_traces([tracemalloc.Filter(True, package)]).statistics("filename"))


async def test_leave_and_the_activity_window_remove_series_and_memory_returns_to_baseline(
    start_agent: AgentFactory,
) -> None:
    running = await start_agent(
        detail=detail(allowlist=[VIP_EMAIL], worst={"participants": 50, "meetings": 10, "interval_seconds": 1})
    )
    tracker = running.agent.detail
    assert tracker is not None
    baseline_sizes = tracker.sizes()
    gc.collect()
    tracemalloc.start()
    try:
        baseline = _detail_bytes(tracemalloc.take_snapshot())
        people = [(f"p{n}", f"m{n % 8}") for n in range(200)]
        await post_all(running, *(qos(running, pid, uuid=uuid, loss="3%") for pid, uuid in people))
        await post_all(running, qos(running, "vip", email=VIP_EMAIL, uuid="m0"))
        running.clock.advance(2)
        housekeeping(running)
        samples = await running.scrape()
        assert len(participants_shown(samples)) == 51
        assert len(meetings_shown(samples)) == 8
        busy = _detail_bytes(tracemalloc.take_snapshot())
        assert busy > baseline + 50_000  # the tables really held something
        # Leaves of every kind: QoS summary, data summary, meeting.participant_left.
        await post_all(running, *(summary(running, pid, uuid) for pid, uuid in people[:50]))
        await post_all(running, *(data_summary(running, pid, uuid) for pid, uuid in people[50:100]))
        await post_all(
            running,
            *(
                meeting_event(running, "meeting.participant_left", uuid, person(pid, email=""))
                for pid, uuid in people[100:150]
            ),
        )
        samples = await running.scrape()
        shown = participants_shown(samples)
        assert not shown & {label(f"{uuid}/{pid}") for pid, uuid in people[:150]}
        assert tracker.sizes()["participants"] == 51
        # The rest (and the VIP) go quiet: gone from /metrics once the activity window (180 s) has passed,
        # even before housekeeping runs; then housekeeping empties the tables.
        running.clock.advance(181)
        samples = await running.scrape()
        assert participants_shown(samples) == set()
        assert meetings_shown(samples) == set()
        housekeeping(running)
        running.clock.advance(3600)
        housekeeping(running)
        assert tracker.sizes() == baseline_sizes
        samples = await running.scrape()
        assert total(samples, "zoom_qss_detail_series") == 0
        assert total(samples, "zoom_qss_detail_tracked") == 0
        gc.collect()
        after = _detail_bytes(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    assert after - baseline < 2_000, (baseline, busy, after)


async def test_meeting_ended_removes_its_series_at_once(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(worst={"participants": 5, "meetings": 5, "interval_seconds": 1}))
    await post_all(running, meeting_event(running, "meeting.started"), qos(running, "p1", loss="4%"))
    running.clock.advance(2)
    housekeeping(running)
    samples = await running.scrape()
    assert meetings_shown(samples) == {label(NUMBER_A)}
    assert participants_shown(samples) == {label(f"{MEETING_A}/p1")}
    await post_all(running, meeting_event(running, "meeting.ended"))
    samples = await running.scrape()
    assert meetings_shown(samples) == set()
    assert participants_shown(samples) == set()
    assert running.agent.detail is not None
    assert running.agent.detail.sizes()["meetings"] == 0


async def test_everything_works_from_qss_events_alone(start_agent: AgentFactory) -> None:
    """No meeting events: the number arrives with the first summary, leave ends the series."""
    running = await start_agent(detail=detail(worst={"participants": 5, "meetings": 5, "interval_seconds": 1}))
    await post_all(running, qos(running, "p1", loss="4%"), qos(running, "p2", loss="2%"))
    running.clock.advance(2)
    housekeeping(running)
    assert meetings_shown(await running.scrape()) == {label(MEETING_A)}
    await post_all(running, summary(running, "p1"))  # carries object.id, the meeting number
    samples = await running.scrape()
    assert meetings_shown(samples) == {label(NUMBER_A)}
    assert participants_shown(samples) == {label(f"{MEETING_A}/p2")}
    assert total(samples, "zoom_qss_meeting_participants") == 1


def test_lookup_prints_the_label_an_email_user_id_or_meeting_number_gets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        "accounts: [{name: acme, account_id: a1, webhook_secret_token: s}]\n"
        "detail: {enabled: true, hash_key_file: key, worst: {participants: 1}}\n"
    )
    assert main(["lookup", "--config", str(config), " Dana.Okafor@EXAMPLE.com", VIP_USER, "845 2173 6902"]) == 0
    lines = capsys.readouterr().out.split()
    assert lines == [label("dana.okafor@example.com"), label(VIP_USER), label(NUMBER_A)]
    assert all(len(line) == 16 and int(line, 16) >= 0 for line in lines)


def test_lookup_without_a_key_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("accounts: [{name: acme, account_id: a1, webhook_secret_token: s}]\n")
    assert main(["lookup", "--config", str(config), "x@example.com"]) == 2
    assert "detail.hash_key" in capsys.readouterr().err


async def test_hashed_allowlist_entries_match_like_plain_ones(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(allowlist=[f"hmac:{label(VIP_USER)}"]))
    await post_all(running, qos(running, "vip", user_id=VIP_USER), qos(running, "other", user_id="someone-else"))
    assert participants_shown(await running.scrape()) == {label(VIP_USER)}  # no email: the user id's hash


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"enabled": True, "worst": {"participants": 1}},
            "detail.hash_key: missing (detail labels are keyed hashes: give hash_key or hash_key_file)",
        ),
        (
            {"enabled": True, "hash_key": KEY},
            "detail.enabled: selects nobody: give allowlist entries, worst.participants or worst.meetings",
        ),
        (
            {"enabled": True, "hash_key": KEY, "allowlist": ["hmac:1234"]},
            "detail.allowlist[0]: a hashed entry is hmac: and 16 hex digits (qss-exporter lookup prints it)",
        ),
    ],
)
def test_detail_config_problems(overrides: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_mapping(merge(base_config(), {"detail": overrides}))
    assert error.value.problems == [problem]


def test_plain_allowlist_entries_never_reach_the_start_up_log() -> None:
    config = config_from_mapping(merge(base_config(), {"detail": detail(allowlist=[VIP_EMAIL, "hmac:" + "a" * 16])}))
    dumped = config.model_dump(mode="json")["detail"]
    assert dumped["allowlist"] == ["<plain entry>", "hmac:" + "a" * 16]
    assert dumped["hash_key"] == "<secret>"


@pytest.mark.parametrize("opted_in", [None, "participant_name", "topic"])
async def test_no_personal_value_of_any_sample_leaks_except_the_opted_in_field(
    start_agent: AgentFactory, opted_in: str | None
) -> None:
    plain = {opted_in: True} if opted_in else {}
    running = await start_agent(
        detail=detail(
            allowlist=[VIP_EMAIL], worst={"participants": 50, "meetings": 50, "interval_seconds": 1}, plain=plain
        )
    )
    personal: set[str] = set()
    names: set[str] = set()
    for path in sorted(SAMPLES.glob("*.json")):
        if path.name.startswith(("meeting.", "webinar.", "session.", "phone.")) and "summary" not in path.name:
            body = load_sample(path.stem)
            body["event_ts"] = now_ms(running)
            personal |= _personal_values(body)
            names |= {v for k, v in _named(body) if k in ("user_name", "name")}
            secret = OTHER_SECRET if path.name.startswith("session.") else SECRET
            assert (await running.post(body, secret=secret)).status_code == 200, path.name
    running.clock.advance(2)
    housekeeping(running)
    samples = await running.scrape()
    assert participants_shown(samples)  # detail series do exist
    text = (await running.scrape_text()).text
    allowed = names if opted_in == "participant_name" else set()
    if opted_in == "topic":  # Video SDK session names are the topic of a session
        allowed = {load_sample("session.user_qos")["payload"]["object"]["session_name"]}
    leaked = sorted(value for value in personal - allowed if value in text)
    assert leaked == []
    assert "@" not in text
    for label_name in {"meeting_number", "topic", "participant_name"} - {opted_in}:
        assert f'{label_name}="' not in text
    if opted_in:
        assert f'{opted_in}="' in text


def _named(value: Any) -> list[tuple[str, str]]:
    """Every (key, string value) pair in a sample, at any depth."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for key, inner in value.items():
            if isinstance(inner, str) and inner:
                found.append((key, inner))
            found += _named(inner)
    elif isinstance(value, list):
        for inner in value:
            found += _named(inner)
    return found


async def test_a_meeting_restarted_under_the_same_number_never_duplicates_a_series(start_agent: AgentFactory) -> None:
    running = await start_agent(detail=detail(allowlist=[VIP_EMAIL], worst={"meetings": 2, "interval_seconds": 1}))
    for uuid in (MEETING_A, MEETING_B):  # two instances of one meeting number, the VIP in both
        await post_all(
            running, meeting_event(running, "meeting.started", uuid), qos(running, "vip", uuid=uuid, email=VIP_EMAIL)
        )
        running.clock.advance(2)
    housekeeping(running)
    lines = [line for line in (await running.scrape_text()).text.splitlines() if not line.startswith("#")]
    detail_lines = [line.rpartition(" ")[0] for line in lines if line.startswith(DETAIL_FAMILIES)]
    assert detail_lines
    assert len(detail_lines) == len(set(detail_lines))
    assert meetings_shown(await running.scrape()) == {label(NUMBER_A)}


def test_context_events_decode_to_meeting_events() -> None:
    joined = decode(
        {
            "event": "webinar.participant_joined",
            "event_ts": 1_700_000_000_000,
            "payload": {
                "account_id": ACCOUNT_ID,
                "object": {
                    "uuid": MEETING_A,
                    "id": "845 2173 6902",
                    "topic": " Town hall ",
                    "participant": person("7"),
                },
            },
        }
    )
    assert joined == MeetingEvent(
        "webinar.participant_joined",
        ACCOUNT_ID,
        "webinar",
        MEETING_A,
        "joined",
        "7",
        1_700_000_000.0,
        ("webinar.participant_joined", ACCOUNT_ID, MEETING_A, "7", 1_700_000_000_000),
        "845 2173 6902",
        "Town hall",
        ParticipantIdentity(VIP_USER, VIP_EMAIL, "Dana Okafor"),
    )
    left = decode(
        {
            "event": "session.user_left",
            "payload": {
                "account_id": ACCOUNT_ID,
                "object": {"session_id": "s1", "session_name": "Triage", "user": {"id": "u9", "name": "Kim"}},
            },
        }
    )
    assert isinstance(left, MeetingEvent)
    assert (left.product, left.kind, left.participant_id, left.topic, left.meeting_number) == (
        "session",
        "left",
        "u9",
        "Triage",
        "",
    )
    assert decode({"event": "meeting.ended", "payload": {"account_id": "a", "object": {}}}) == InvalidEvent(
        "meeting.ended", "uuid"
    )
    assert set(CONTEXT_EVENTS) & set(KNOWN_EVENTS) == set()


def test_qss_records_carry_the_identity_but_no_output_reads_it() -> None:
    record = decode(load_sample("meeting.participant_qos"))
    assert isinstance(record, QosRecord)
    assert record.identity == ParticipantIdentity(VIP_USER, "dana.okafor@example.com", "")
    summary_record = decode(load_sample("meeting.participant_qos_summary"))
    assert isinstance(summary_record, SummaryRecord)
    assert summary_record.identity.name == "Dana Okafor"
    assert summary_record.meeting_number == NUMBER_A
