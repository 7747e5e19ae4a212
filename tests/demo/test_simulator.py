"""The demo/benchmark simulator: determinism, sample-exact shapes, coverage, incidents."""

from __future__ import annotations

import ipaddress
import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import pytest

from qss_exporter.demo.organisation import DC_INCIDENT, PHONE_INCIDENT, WIFI_INCIDENT, mos, quality_label
from qss_exporter.demo.simulator import (
    DEFAULT_SITES,
    Emitted,
    Incident,
    SimAccount,
    SimSite,
    Simulator,
    default_accounts,
)
from tests.samples import SAMPLES

START = 1761314400.0  # 2025-10-24T14:00:00Z
MINUTES = 20
SIZE = 120

ALL_EVENTS = {
    f"{product}.{kind}"
    for product in ("meeting", "webinar")
    for kind in ("participant_qos", "participant_qos_summary", "participant_data", "participant_data_summary")
} | {
    "session.user_qos",
    "session.user_qos_summary",
    "session.user_data",
    "session.user_data_summary",
    "phone.call_qos",
    "phone.call_qos_summary",
}
NETWORK_TYPES = {"Wired", "Wifi", "Cellular", "PPP", "Others"}
DEVICES = {"Windows", "Mac", "iOS", "Android", "H.323/SIP"}
QUALITY = {"good", "fair", "poor", "bad"}
# the reference's tolerant parser (REFERENCE.md 1.7)
_NUM = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(kbps|ms|%|fps|dbm)?\s*$", re.IGNORECASE)
_UNIT = {"bitrate": "kbps", "latency": "ms", "jitter": "ms", "loss": "%", "frame_rate": "fps"}


def metric(value: object) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    m = _NUM.match(str(value))
    return float(m.group(1)) if m else None


def num(value: object) -> float:
    """A metric value that must parse."""
    parsed = metric(value)
    assert parsed is not None, value
    return parsed


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def payload(e: Emitted) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(e.body)
    return body


def person_of(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = obj["user"] if "user" in obj else obj["participant"]
    return found


def instance_key(obj: dict[str, Any]) -> tuple[str, str]:
    """(meeting uuid / session id, per-instance participant id) of a meeting/webinar/session event."""
    person = person_of(obj)
    pid = person.get("user_id") if "user_id" in person else person.get("participant_id", person.get("id"))
    return (obj.get("uuid") or obj["session_id"], str(pid))


def site_of(ip: str) -> SimSite | None:
    address = ipaddress.IPv4Address(ip)
    for site in DEFAULT_SITES:
        if any(address in ipaddress.IPv4Network(cidr) for cidr in site.cidrs):
            return site
    return None


def details_by_type(qos: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["type"]: entry["details"] for entry in qos}


@dataclass
class Run:
    sim: Simulator
    emitted: list[Emitted]
    bodies: list[dict[str, Any]]
    boundaries: list[tuple[float, float, int, int]] = field(default_factory=list)  # (from, to, first, end) index

    def of(self, event: str) -> Iterator[dict[str, Any]]:
        return (b for b in self.bodies if b["event"] == event)

    def incident(self, name: str) -> Incident:
        return next(i for i in self.sim.incidents if i.name == name)


def run(minutes: int = MINUTES, *, size: int = SIZE, seed: int = 1, step: float = 60.0, start: float = START) -> Run:
    sim = Simulator(default_accounts(), size=size, seed=seed, start=start)
    emitted: list[Emitted] = []
    boundaries = []
    for _ in range(round(minutes * 60 / step)):
        before = sim.now
        batch = sim.advance(step)
        boundaries.append((before, sim.now, len(emitted), len(emitted) + len(batch)))
        emitted += batch
    return Run(sim, emitted, [payload(e) for e in emitted], boundaries)


@pytest.fixture(scope="module")
def twenty() -> Run:
    return run()


@pytest.fixture(scope="module")
def samples() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for event in ALL_EVENTS:
        path = SAMPLES / f"{event}.json"
        if not path.exists():
            pytest.skip(f"sample {path} is missing")
        out[event] = json.loads(path.read_text())
    return out


# ---------------------------------------------------------------------------------------------------------------
# API and determinism


def test_default_accounts_and_sites() -> None:
    acme, health = default_accounts()
    assert (acme.name, acme.products) == ("acme", frozenset({"meeting", "webinar", "phone"}))
    assert (health.name, health.products) == ("acme-health", frozenset({"session"}))
    assert acme.account_id != health.account_id
    assert len(DEFAULT_SITES) >= 4
    assert any(all(ipaddress.IPv4Network(c).subnet_of(ipaddress.IPv4Network("192.168.0.0/16")) for c in s.cidrs)
               for s in DEFAULT_SITES)  # fmt: skip


def test_same_seed_same_calls_same_output() -> None:
    a = Simulator(default_accounts(), seed=7, start=START)
    b = Simulator(default_accounts(), seed=7, start=START)
    for step in (0.0, 13.5, 60.0, 1.0, 300.0):
        assert a.advance(step) == b.advance(step)
    assert a.now == b.now == START + 374.5
    c = Simulator(default_accounts(), seed=8, start=START)
    assert c.advance(374.5) != Simulator(default_accounts(), seed=7, start=START).advance(374.5)


def test_step_size_does_not_change_the_stream() -> None:
    whole = Simulator(default_accounts(), size=40, seed=3, start=START).advance(600)
    sim = Simulator(default_accounts(), size=40, seed=3, start=START)
    pieces: list[Emitted] = []
    for _ in range(600):
        pieces += sim.advance(1.0)
    assert pieces == whole


def test_advance_returns_events_of_the_interval_in_time_order(twenty: Run) -> None:
    stamps = [b["event_ts"] for b in twenty.bodies]
    assert stamps == sorted(stamps)
    for before, after, first, end in twenty.boundaries:
        for ts in stamps[first:end]:
            assert before * 1000 <= ts < after * 1000
    assert twenty.sim.now == START + MINUTES * 60


def test_advance_rejects_negative_or_nan() -> None:
    sim = Simulator(default_accounts(), start=START)
    with pytest.raises(ValueError, match="advance"):
        sim.advance(-1)
    with pytest.raises(ValueError, match="advance"):
        sim.advance(float("nan"))


def test_needs_a_product() -> None:
    with pytest.raises(ValueError, match="product"):
        Simulator([SimAccount("x", "id", frozenset())], start=START)
    with pytest.raises(ValueError, match="unknown products"):
        SimAccount("x", "id", frozenset({"rooms"}))


def test_incidents_recur_within_the_first_twenty_minutes(twenty: Run) -> None:
    names = {i.name for i in twenty.sim.incidents}
    assert {WIFI_INCIDENT, DC_INCIDENT, PHONE_INCIDENT} == names
    for incident in twenty.sim.incidents:
        assert incident.description
        windows = incident.windows(3 * 3600)
        assert windows[0][1] <= 20 * 60
        assert len(windows) >= 3
        assert incident.active_at((windows[1][0] + windows[1][1]) / 2)
        assert not incident.active_at(windows[0][1] + 1)
    wifi = twenty.incident(WIFI_INCIDENT)
    assert wifi.site in {s.name for s in DEFAULT_SITES}
    assert twenty.incident(DC_INCIDENT).data_centre


# ---------------------------------------------------------------------------------------------------------------
# Shapes: identical to the reference samples


def _keys(value: Any) -> set[str]:
    assert isinstance(value, dict)
    return set(value)


def _detail_keys(samples: dict[str, dict[str, Any]]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Expected details keys per QoS type, for real-time and summary events, learnt from the samples."""
    live: dict[str, set[str]] = {}
    summary: dict[str, set[str]] = {}
    for event, sample in samples.items():
        if event.startswith("phone") or "qos" not in event:
            continue
        target = summary if event.endswith("summary") else live
        for entry in person_of(sample["payload"]["object"])["qos"]:
            target.setdefault(entry["type"], set()).update(entry["details"])
    for table in (live, summary):
        audio, video = table["audio_input"], table["video_input"]
        for media in ("audio", "video", "as"):
            for path in ("crc", "rwg"):
                for way in ("from", "to"):
                    table[f"{media}_device_{way}_{path}"] = audio if media == "audio" else video
        table["video_output"] = table["as_input"] = table["as_output"] = video
        table["as_quality"] = table["video_quality"] = table["audio_quality"]
    return live, summary


CPU_BASE = {"zoom_min_cpu_usage", "zoom_avg_cpu_usage", "zoom_max_cpu_usage", "system_max_cpu_usage"}
CPU_PRESSURE = {"system_min_cpu_pressure_level", "system_avg_cpu_pressure_level", "system_max_cpu_pressure_level"}


def test_every_body_has_the_sample_shape(twenty: Run, samples: dict[str, dict[str, Any]]) -> None:
    live, summary = _detail_keys(samples)
    accounts = {a.name: a.account_id for a in default_accounts()}
    for e, body in zip(twenty.emitted, twenty.bodies, strict=True):
        sample = samples[e.event]
        assert body["event"] == e.event
        assert set(body) == {"event", "event_ts", "payload"}
        assert isinstance(body["event_ts"], int)
        assert set(body["payload"]) == {"account_id", "object"}
        assert body["payload"]["account_id"] == accounts[e.account]
        obj, expected = body["payload"]["object"], sample["payload"]["object"]
        assert _keys(obj) == _keys(expected), e.event
        if e.event.startswith("phone."):
            _check_phone(e.event, obj, expected)
            continue
        person, sample_person = person_of(obj), person_of(expected)
        assert _keys(person) == _keys(sample_person), e.event
        for key, value in person.items():
            assert type(value) is type(sample_person[key]), (e.event, key)
        if "data" in person:
            (element,) = person["data"]
            assert set(element) == set(sample_person["data"][0]), e.event
            assert all(isinstance(v, str) for v in element.values())
            continue
        table = summary if e.event.endswith("summary") else live
        entry_keys = {"type", "details"} if e.event.endswith("summary") else {"date_time", "type", "details"}
        types = [entry["type"] for entry in person["qos"]]
        assert len(types) == len(set(types)), e.event
        for entry in person["qos"]:
            assert set(entry) == entry_keys
            kind, details = entry["type"], entry["details"]
            if kind == "cpu_usage":
                assert CPU_BASE <= set(details) <= CPU_BASE | CPU_PRESSURE
            elif kind == "notification":
                assert not e.event.endswith("summary")
                assert details["network_notification"] in {"network bandwidth low", "internet connection unstable"}
                continue
            else:
                assert set(details) == table[kind], (e.event, kind)
            _check_values(kind, details, summary=e.event.endswith("summary"))


def _check_values(kind: str, details: dict[str, Any], *, summary: bool) -> None:
    for key, value in details.items():
        if key == "rssi_unit":
            assert value == "dBm"
        elif key.endswith("_rssi"):
            assert isinstance(value, int) if summary else isinstance(value, str) and metric(value) is not None
            assert -100 <= float(value) <= -30
        elif key == "quality":
            assert value in QUALITY
        elif key == "quality_score":
            assert 1.0 <= float(value) <= 5.0
            assert quality_label(float(value)) == details["quality"]
        elif key.endswith("pressure_level"):
            assert value in {"normal", "fair", "serious", "critical"}
        elif key == "resolution":
            assert value in {"", "640*360", "1280*720", "1920*1080"}
        elif value == "":
            assert kind in {"video_input", "as_input"}
        else:
            assert isinstance(value, str)
            unit = next((u for k, u in _UNIT.items() if key.endswith(k)), "%")
            assert re.fullmatch(rf"\d+(\.\d)?\s?{unit}", value, re.IGNORECASE), (kind, key, value)


def _check_phone(event: str, obj: dict[str, Any], expected: dict[str, Any]) -> None:
    for time_key in ("call_start_time", "call_end_time"):
        if time_key in obj:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", obj[time_key])
    if event == "phone.call_qos":
        leg, sample_leg = obj["call_qos"], expected["call_qos"]
        assert _keys(leg) == _keys(sample_leg)
        assert _keys(leg["qos"]) == _keys(sample_leg["qos"])
        entries = [leg["qos"]]
        sample_details = sample_leg["qos"]["details"]
    else:
        assert isinstance(obj["call_qos"], list)
        assert [leg["type"] for leg in obj["call_qos"]] == ["caller", "callee"]
        for leg in obj["call_qos"]:
            assert _keys(leg) == _keys(expected["call_qos"][0])
        entries = [entry for leg in obj["call_qos"] for entry in leg["qos"]]
        sample_details = expected["call_qos"][0]["qos"][0]["details"]
    for entry in entries:
        assert entry["type"] in {"sending", "receiving"}
        details = entry["details"]
        assert set(details) == set(sample_details)
        assert details["network"] in {"LAN", "WiFi", "VPN"}
        for key, value in details.items():
            if key != "network":
                assert re.fullmatch(r"\d+(\.\d)?", value), (key, value)  # bare numbers, no units
        assert 1.0 <= float(details["mos"]) <= 5.0


# ---------------------------------------------------------------------------------------------------------------
# Twenty simulated minutes, size=120


def test_all_fourteen_event_types_appear(twenty: Run) -> None:
    assert {e.event for e in twenty.emitted} == ALL_EVENTS
    for e in twenty.emitted:
        assert e.account == ("acme-health" if e.event.startswith("session.") else "acme")


def test_participants_come_from_several_sites_networks_devices_and_data_centres(twenty: Run) -> None:
    sites, networks, devices, centres, versions = Counter[str](), Counter[str](), set(), set(), set()
    for body in twenty.bodies:
        if "_data" not in body["event"]:
            continue
        (element,) = person_of(body["payload"]["object"])["data"]
        site = site_of(element["signaling_internal_ip_address"])
        assert site is not None, element["signaling_internal_ip_address"]
        for media in ("audio", "video", "as"):
            assert element[f"{media}_internal_ip_address"] == element["signaling_internal_ip_address"]
        public = ipaddress.IPv4Address(element["signaling_ip_address"])
        home = ("198.51.100.0/24", "203.0.113.0/24")  # documentation ranges
        assert any(public in ipaddress.IPv4Network(n) for n in (home if site.name == "remote" else ("192.0.2.0/24",)))
        sites[site.name] += 1
        networks[element["network_type"]] += 1
        devices.add(element["device"])
        centres.add(element["data_center"])
        versions.add(element["version"])
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", element["version"])
    assert len(sites) >= 3
    assert set(networks) <= NETWORK_TYPES
    assert len(networks) >= 2
    assert networks["Wired"] + networks["Wifi"] > sum(networks.values()) / 2
    assert devices <= DEVICES
    assert "H.323/SIP" in devices
    assert len(centres) >= 3
    assert len(versions) >= 3


def test_one_qos_record_per_participant_per_minute(twenty: Run) -> None:
    seen: set[tuple[str, str, str]] = set()
    for event in ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos"):
        for body in twenty.of(event):
            obj = body["payload"]["object"]
            stamps = {entry["date_time"] for entry in person_of(obj)["qos"]}
            assert len(stamps) == 1
            (stamp,) = stamps
            assert stamp.endswith(":00Z")
            assert 0 <= body["event_ts"] / 1000 - epoch(stamp) < 60
            key = (*instance_key(obj), stamp)
            assert key not in seen
            seen.add(key)


def test_population_hovers_around_size(twenty: Run) -> None:
    per_minute: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
    for event in ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos"):
        for body in twenty.of(event):
            obj = body["payload"]["object"]
            per_minute[person_of(obj)["qos"][0]["date_time"]].add(instance_key(obj))
    for body in twenty.of("phone.call_qos"):
        obj = body["payload"]["object"]
        minute = obj["call_qos"]["qos"]["date_time"][:17] + "00Z"
        per_minute[minute].add((obj["call_id"], obj["call_qos"]["type"]))
    counts = [len(per_minute[m]) for m in sorted(per_minute)][3:-1]
    assert len(counts) >= MINUTES - 5
    assert all(0.7 * SIZE <= c <= 1.3 * SIZE for c in counts), counts
    assert 0.85 * SIZE <= statistics.mean(counts) <= 1.15 * SIZE


def test_webinars_are_large_and_meetings_small(twenty: Run) -> None:
    members: defaultdict[tuple[str, str], set[str]] = defaultdict(set)
    first_join: dict[tuple[str, str], float] = {}
    for event in ("meeting.participant_data", "webinar.participant_data", "session.user_data"):
        for body in twenty.of(event):
            uuid, pid = instance_key(body["payload"]["object"])
            key = (event.split(".")[0], uuid)
            members[key].add(pid)
            first_join.setdefault(key, body["event_ts"] / 1000)
    sizes: defaultdict[str, list[int]] = defaultdict(list)
    for key, pids in members.items():
        if first_join[key] < twenty.sim.now - 5 * 60:  # everyone but late joiners is in after 3 minutes
            sizes[key[0]].append(len(pids))
    assert len(sizes["meeting"]) >= 5
    assert all(2 <= n <= 25 for n in sizes["meeting"])
    assert sizes["webinar"]
    assert all(30 <= n <= 150 + SIZE for n in sizes["webinar"])  # late attendees top a webinar up
    assert all(2 <= n <= 6 for n in sizes["session"])
    assert 2 in sizes["session"]


def test_everyone_with_qos_gets_summaries_when_leaving() -> None:
    r = run(45)
    end = r.sim.now
    last_qos: dict[tuple[str, str], float] = {}
    summaries: dict[tuple[str, str], list[str]] = defaultdict(list)
    for body in r.bodies:
        event = body["event"]
        if event.startswith("phone."):
            continue
        key = instance_key(body["payload"]["object"])
        if event.endswith("_qos"):
            assert not summaries[key], "qos after the participant's summary"
            last_qos[key] = body["event_ts"] / 1000
        elif event.endswith("summary"):
            summaries[key].append(event)
    assert len(last_qos) > SIZE
    finished = 0
    for key, last in last_qos.items():
        if summaries[key]:
            finished += 1
            qos_summary, data_summary = summaries[key]
            assert qos_summary.endswith("qos_summary")
            assert data_summary.endswith("data_summary")
        else:
            assert end - last < 120, f"{key} stopped reporting at {last} without a summary"
    assert finished > SIZE / 2
    calls_with_qos = {b["payload"]["object"]["call_id"] for b in r.of("phone.call_qos")}
    ended = {b["payload"]["object"]["call_id"] for b in r.of("phone.call_qos_summary")}
    for call_id in calls_with_qos - ended:
        last = max(b["event_ts"] for b in r.of("phone.call_qos") if b["payload"]["object"]["call_id"] == call_id)
        assert end - last / 1000 < 60


def test_summary_aggregates_match_the_records(twenty: Run) -> None:
    records: defaultdict[tuple[str, str], list[float]] = defaultdict(list)
    checked = 0
    for body in twenty.bodies:
        event, obj = body["event"], body["payload"]["object"]
        if event == "meeting.participant_qos":
            qos = details_by_type(person_of(obj)["qos"])
            records[instance_key(obj)].append(float(qos["audio_output"]["latency"].split("m")[0]))
        elif event == "meeting.participant_qos_summary":
            audio = details_by_type(person_of(obj)["qos"])["audio_output"]
            low, mid, high = (num(audio[f"{s}_latency"]) for s in ("min", "avg", "max"))
            assert low <= mid <= high
            values = records[instance_key(obj)]
            assert abs(mid - statistics.mean(values)) <= 2
            checked += 1
    assert checked >= 3


def test_streams_vary_as_the_agent_must_cope_with(twenty: Run) -> None:
    types: Counter[str] = Counter()
    camera_off = Counter[str]()
    formats = Counter[str]()
    pressure = rssi_live = notifications = 0
    for body in twenty.of("meeting.participant_qos"):
        qos = details_by_type(person_of(body["payload"]["object"])["qos"])
        types.update(qos.keys())
        assert {"audio_input", "audio_output", "cpu_usage", "audio_quality"} <= set(qos)
        video = qos.get("video_input")
        if video is None:
            camera_off["omitted"] += 1
        elif video["bitrate"] == "":
            camera_off["empty"] += 1
        elif metric(video["bitrate"]) == 0 and metric(video["frame_rate"]) == 0:
            camera_off["zero"] += 1
        for details in qos.values():
            bitrate = details.get("bitrate", "")
            if bitrate:
                formats[re.sub(r"\d+", "N", bitrate)] += 1
        pressure += set(qos["cpu_usage"]) >= CPU_PRESSURE
        rssi_live += "wifi_rssi" in qos
        notifications += "notification" in qos
    assert set(camera_off) == {"omitted", "empty", "zero"}
    assert {"N kbps", "Nkbps", "N Kbps"} <= set(formats)
    assert formats["N kbps"] > 0.8 * formats.total()
    for kind in (
        "video_input",
        "video_output",
        "as_input",
        "as_output",
        "video_quality",
        "audio_device_from_rwg",
        "audio_device_to_rwg",
        "audio_device_from_crc",
        "audio_device_to_crc",
        "video_device_from_crc",
        "video_device_to_crc",
    ):
        assert types[kind], kind
    assert 0 < pressure < types["cpu_usage"]
    assert rssi_live
    assert notifications


def test_values_are_realistic_outside_incidents(twenty: Run) -> None:
    audio: list[float] = []
    video: list[float] = []
    latency: list[float] = []
    loss: list[float] = []
    fps: list[float] = []
    for event in ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos"):
        for body in twenty.of(event):
            offset = body["event_ts"] / 1000 - START
            if any(i.active_at(offset) or i.active_at(offset - 60) for i in twenty.sim.incidents):
                continue
            qos = details_by_type(person_of(body["payload"]["object"])["qos"])
            for kind in ("audio_input", "audio_output"):
                value = num(qos[kind]["bitrate"])
                if value:
                    audio.append(value)
                    latency.append(num(qos[kind]["latency"]))
                    loss.append(num(qos[kind]["avg_loss"]))
            for kind in ("video_input", "video_output"):
                if kind in qos and metric(qos[kind]["bitrate"]):
                    video.append(num(qos[kind]["bitrate"]))
                    fps.append(num(qos[kind]["frame_rate"]))
    assert len(audio) > 200
    assert len(video) > 200
    assert min(audio) >= 20
    assert max(audio) <= 60
    assert min(video) >= 150  # down to half the nominal rate when packets are lost
    assert max(video) <= 2500
    assert all(15 <= x <= 150 for x in latency)
    assert all(1 <= x <= 30 for x in fps)
    assert statistics.median(loss) < 1.0


# ---------------------------------------------------------------------------------------------------------------
# Incidents are visible in the numbers


def _participants_where(r: Run, accept: Callable[[dict[str, str]], bool]) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for body in r.bodies:
        if body["event"].endswith("_data"):
            obj = body["payload"]["object"]
            (element,) = person_of(obj)["data"]
            if accept(element):
                keys.add(instance_key(obj))
    return keys


Phase = list[tuple[dict[str, Any], dict[str, dict[str, Any]]]]  # (audio_output details, all details by type)


def _audio_by_phase(r: Run, keys: set[tuple[str, str]], incident: Incident) -> tuple[Phase, Phase]:
    during: Phase = []
    outside: Phase = []
    for event in ("meeting.participant_qos", "webinar.participant_qos", "session.user_qos"):
        for body in r.of(event):
            obj = body["payload"]["object"]
            if instance_key(obj) not in keys:
                continue
            qos = person_of(obj)["qos"]
            offset = body["event_ts"] / 1000 - START
            entry = next(e for e in qos if e["type"] == "audio_output")  # webinar attendees send no audio
            if incident.active_at(offset):
                during.append((entry["details"], details_by_type(qos)))
            elif not incident.active_at(offset + 120) and not incident.active_at(offset - 120):
                outside.append((entry["details"], details_by_type(qos)))
    return during, outside


def test_wifi_incident_is_visible(twenty: Run) -> None:
    incident = twenty.incident(WIFI_INCIDENT)
    (site,) = (s for s in DEFAULT_SITES if s.name == incident.site)

    def at_site_on_wifi(element: dict[str, str]) -> bool:
        located = site_of(element["signaling_internal_ip_address"])
        return element["network_type"] == "Wifi" and located is not None and located.name == site.name

    during, outside = _audio_by_phase(twenty, _participants_where(twenty, at_site_on_wifi), incident)
    assert len(during) >= 20
    assert len(outside) >= 20
    assert statistics.mean(num(d["avg_loss"]) for d, _ in during) > 3.0
    assert statistics.mean(num(d["avg_loss"]) for d, _ in outside) < 1.0
    grades = Counter(q["audio_quality"]["quality"] for _, q in during)
    assert grades["poor"] + grades["bad"] > len(during) / 2
    assert sum("notification" in q for _, q in during) > len(during) / 2
    assert statistics.mean(float(q["wifi_rssi"]["avg_rssi"]) for _, q in during) < -75
    assert statistics.mean(float(q["wifi_rssi"]["avg_rssi"]) for _, q in outside) > -72


def test_data_centre_incident_is_visible(twenty: Run) -> None:
    incident = twenty.incident(DC_INCIDENT)
    keys = _participants_where(twenty, lambda element: element["data_center"] == incident.data_centre)
    during, outside = _audio_by_phase(twenty, keys, incident)
    assert len(during) >= 20
    assert len(outside) >= 20
    assert statistics.mean(num(d["latency"]) for d, _ in during) > 200
    assert all(190 <= (num(d["latency"])) <= 420 for d, _ in during)
    assert statistics.mean(num(d["latency"]) for d, _ in outside) < 100


def test_phone_incident_is_visible(twenty: Run) -> None:
    incident = twenty.incident(PHONE_INCIDENT)
    during: list[float] = []
    outside: list[float] = []
    for body in twenty.of("phone.call_qos"):
        score = float(body["payload"]["object"]["call_qos"]["qos"]["details"]["mos"])
        offset = body["event_ts"] / 1000 - START
        if incident.active_at(offset):
            during.append(score)
        elif not any(i.active_at(offset) for i in twenty.sim.incidents):  # Wi-Fi trouble hurts calls too
            outside.append(score)
    low_during = sum(s < 3.5 for s in during) / len(during)
    low_outside = sum(s < 3.5 for s in outside) / len(outside)
    assert min(during) < 3.0
    assert low_during > 0.1
    assert low_outside < low_during / 3


def test_mos_model() -> None:
    assert mos(20, 2, 0.0) > 4.2
    assert mos(30, 5, 6.0) < 3.0
    assert mos(400, 10, 0.1) < mos(100, 10, 0.1)
    assert 1.0 <= mos(2000, 500, 100) <= mos(0, 0, 0) <= 4.5


# ---------------------------------------------------------------------------------------------------------------
# Other configurations


def test_custom_sites_small_size_and_unaligned_start() -> None:
    sites = (SimSite("paris", ("10.77.0.0/16",)), SimSite("home", ("192.168.50.0/24",)))
    start = START + 37.25
    accounts = (SimAccount("solo", "acct-1", frozenset({"meeting"})),)
    sim = Simulator(accounts, sites=sites, size=10, seed=5, start=start)
    emitted = sim.advance(15 * 60)
    assert {e.account for e in emitted} == {"solo"}
    assert {e.event.split(".")[0] for e in emitted} == {"meeting"}
    bodies = [payload(e) for e in emitted]
    for body in bodies:
        assert body["payload"]["account_id"] == "acct-1"
        if body["event"].endswith("_data"):
            ip = ipaddress.IPv4Address(person_of(body["payload"]["object"])["data"][0]["audio_internal_ip_address"])
            assert any(ip in ipaddress.IPv4Network(c) for s in sites for c in s.cidrs)
    assert {i.site for i in sim.incidents if i.site} == {"paris"}
    assert 5 <= sim.population <= 20
    assert [i.name for i in sim.incidents] == [WIFI_INCIDENT, DC_INCIDENT]


def test_a_large_organisation_keeps_up() -> None:
    sim = Simulator(default_accounts(), size=1000, seed=2, start=START)
    sim.advance(180)
    batch = sim.advance(60)
    qos = [e for e in batch if e.event.endswith(("participant_qos", "user_qos"))]
    assert len(qos) >= 700  # a minute of a 1000-participant organisation (phone legs excluded)
    assert 850 <= sim.population <= 1150
