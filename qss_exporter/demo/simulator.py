"""Deterministic, I/O-free simulator of an organisation's Zoom traffic, as QSS webhook bodies.

``Simulator(accounts, start=...).advance(seconds)`` moves *simulated* time forward and returns every webhook
body (compact JSON bytes, the shapes of the reference samples) due in that interval, in time order. Meetings,
webinars, Video SDK sessions and Zoom Phone calls start and end so that about ``size`` participants (phone
calls count two legs) are connected at any time; recurring incidents (see :attr:`Simulator.incidents`) make
some of the numbers go bad. Same seed and same ``advance`` calls give byte-identical output: all randomness
comes from one :class:`random.Random`, never from the global generator or the clock.

The organisation itself (sites, people, networks, incidents) lives in
:mod:`qss_exporter.demo.organisation`.
"""

from __future__ import annotations

import base64
import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial

import orjson

from qss_exporter.demo.organisation import (
    DEFAULT_SITES,
    Conditions,
    Incident,
    Link,
    Organisation,
    Person,
    SimAccount,
    SimSite,
    default_accounts,
    mos,
    quality_label,
)

__all__ = ["DEFAULT_SITES", "Emitted", "Incident", "SimAccount", "SimSite", "Simulator", "default_accounts"]

_MINUTE = 60_000
_CONTROL_MS = 10_000
_PHONE_TICK_MS = 30_000
_ORDER = ("meeting", "webinar", "session", "phone")
_SHARES = {"meeting": 0.45, "webinar": 0.3, "session": 0.1, "phone": 0.15}
_WEBINAR_MIN = 30
_WIND_DOWN_MS = 90_000

# value-format variants: mostly Zoom's example form, sometimes without the space or with a capital K
_KBPS = (" kbps", "kbps", " Kbps")
_MS = (" ms", "ms", " ms")
_FPS = (" fps", "fps", " fps")

# camera states of a participant who could send video
_CAM_ON, _CAM_OMIT, _CAM_EMPTY, _CAM_ZERO = range(4)
_VIDEO_KBPS = {"640*360": (300.0, 650.0), "1280*720": (700.0, 1500.0), "1920*1080": (1500.0, 2500.0)}
_SPEAKER_VIEW = ("1280*720", "1280*720", "1920*1080")  # larger galleries get 640*360
_PRESSURE = ("normal", "fair", "serious", "critical")
_STREAM_KEYS = ("bitrate", "latency", "jitter", "avg_loss", "max_loss")
_EMPTY_VIDEO = dict.fromkeys((*_STREAM_KEYS, "resolution", "frame_rate"), "")

Json = dict[str, object]


@dataclass(frozen=True, slots=True)
class Emitted:
    """One webhook body, with the account whose secret signs it."""

    account: str
    event: str
    body: bytes


@lru_cache(maxsize=8192)
def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pressure(cpu: float) -> int:
    return 0 if cpu < 50 else 1 if cpu < 75 else 2 if cpu < 92 else 3


# ---------------------------------------------------------------------------------------------------------------
# Per-participant accumulators for the *_qos_summary events


class _StreamAcc:
    __slots__ = ("br", "fps", "jit", "lat", "loss", "max_loss", "n", "res", "video")

    def __init__(self, video: bool) -> None:
        self.video = video
        self.n = 0
        self.br = [math.inf, 0.0, 0.0]  # min, sum, max
        self.lat = [math.inf, 0.0, 0.0]
        self.jit = [math.inf, 0.0, 0.0]
        self.loss = [math.inf, 0.0, 0.0]
        self.fps = [math.inf, 0.0, 0.0]
        self.max_loss = 0.0
        self.res = ""

    def add(self, br: float, lat: float, jit: float, loss: float, max_loss: float, fps: float, res: str) -> None:
        self.n += 1
        for acc, v in ((self.br, br), (self.lat, lat), (self.jit, jit), (self.loss, loss), (self.fps, fps)):
            if v < acc[0]:
                acc[0] = v
            acc[1] += v
            if v > acc[2]:
                acc[2] = v
        self.max_loss = max(self.max_loss, max_loss)
        if res:
            self.res = res

    def summary(self, style: int) -> dict[str, str]:
        n = self.n
        kb, ms = _KBPS[style], _MS[style]
        br, lat, jit, loss = self.br, self.lat, self.jit, self.loss
        out = {
            "min_bitrate": f"{round(br[0] * 0.75)}{kb}",
            "avg_bitrate": f"{round(br[1] / n)}{kb}",
            "max_bitrate": f"{round(br[2] * 1.2)}{kb}",
            "min_latency": f"{round(lat[0] * 0.9)}{ms}",
            "avg_latency": f"{round(lat[1] / n)}{ms}",
            "max_latency": f"{round(lat[2] * 1.3)}{ms}",
            "min_jitter": f"{max(0, round(jit[0]) - 1)}{ms}",
            "avg_jitter": f"{round(jit[1] / n)}{ms}",
            "max_jitter": f"{round(jit[2] * 1.8)}{ms}",
            "min_loss": f"{loss[0] * 0.5:.1f}%",
            "avg_loss": f"{loss[1] / n:.1f}%",
            "max_loss": f"{self.max_loss:.1f}%",
        }
        if self.video:
            fps, unit = self.fps, _FPS[style]
            out["resolution"] = self.res
            out["min_frame_rate"] = f"{round(fps[0] * 0.6)}{unit}"
            out["avg_frame_rate"] = f"{round(fps[1] / n)}{unit}"
            out["max_frame_rate"] = f"{min(30, round(fps[2] * 1.15))}{unit}"
        return out


class _CpuAcc:
    __slots__ = ("avg", "levels", "max", "min", "n", "system")

    def __init__(self) -> None:
        self.n = 0
        self.min = math.inf
        self.avg = 0.0
        self.max = 0.0
        self.system = 0.0
        self.levels: list[int] = []

    def summary(self) -> dict[str, str]:
        out = {
            "zoom_min_cpu_usage": f"{round(self.min)}%",
            "zoom_avg_cpu_usage": f"{round(self.avg / self.n)}%",
            "zoom_max_cpu_usage": f"{round(self.max)}%",
            "system_max_cpu_usage": f"{round(self.system)}%",
        }
        if self.levels:
            levels = self.levels
            out["system_min_cpu_pressure_level"] = _PRESSURE[min(levels)]
            out["system_avg_cpu_pressure_level"] = _PRESSURE[round(sum(levels) / len(levels))]
            out["system_max_cpu_pressure_level"] = _PRESSURE[max(levels)]
        return out


class _ScoreAcc:
    __slots__ = ("n", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0

    def summary(self) -> dict[str, str]:
        score = round(self.total / self.n, 2)
        return {"quality": quality_label(score), "quality_score": f"{score:.2f}"}


class _RssiAcc:
    __slots__ = ("avg", "max", "min", "n")

    def __init__(self) -> None:
        self.n = 0
        self.min = 0
        self.avg = 0.0
        self.max = -200

    def summary(self) -> Json:
        return {"min_rssi": self.min, "avg_rssi": round(self.avg / self.n), "max_rssi": self.max, "rssi_unit": "dBm"}


_Acc = _StreamAcc | _CpuAcc | _ScoreAcc | _RssiAcc


# ---------------------------------------------------------------------------------------------------------------
# Simulation state


@dataclass(slots=True, eq=False)
class _Activity:
    kind: str  # meeting | webinar | session
    account: SimAccount
    uuid: str  # meeting/webinar uuid or session_id
    number: str  # meeting/webinar number or session_name
    session_key: str
    end_ms: int
    size: int
    pending: int = 0
    present: list[_Participant] = field(default_factory=list)
    winding_down: bool = False  # its people no longer count towards the population target
    sharer: _Participant | None = None
    share_until: int = 0


@dataclass(slots=True, eq=False)
class _Participant:
    activity: _Activity
    person: Person
    pid: str
    role: str  # host | member | panelist | attendee
    leave_ms: int
    tick_ms: int  # offset after each minute boundary at which the minute's qos record is sent
    camera: int
    resolution: str  # resolution of the video this participant sends
    view: str  # resolution of the video this participant receives
    empty_share: bool
    user_key: str
    link: Link | None = None
    data: dict[str, str] = field(default_factory=dict)
    stats: dict[str, _Acc] = field(default_factory=dict)
    left: bool = False
    records: int = 0

    @property
    def sender(self) -> bool:
        return self.role != "attendee"


@dataclass(slots=True, eq=False)
class _Leg:
    kind: str  # caller | callee
    person: Person
    link: Link
    network: str  # LAN | WiFi | VPN
    # direction -> [n, bitrate, avg_loss, max_loss, jitter, delay, mos]
    totals: dict[str, list[float]] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Call:
    account: SimAccount
    call_id: str
    start_ms: int
    end_ms: int
    legs: tuple[_Leg, _Leg]


class Simulator:
    """Generates the QSS webhooks of a believable organisation in accelerated, simulated time."""

    incidents: tuple[Incident, ...]

    def __init__(
        self,
        accounts: Sequence[SimAccount],
        *,
        sites: Sequence[SimSite] = DEFAULT_SITES,
        size: int = 120,
        seed: int = 1,
        start: float,
    ) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        products = [p for p in _ORDER if any(p in a.products for a in accounts)]
        if not products:
            raise ValueError("no account has any product")
        self._rng = rng = random.Random(seed)
        self._accounts = {p: [a for a in accounts if p in a.products] for p in products}
        total = sum(_SHARES[p] for p in products)
        self._targets = {p: size * _SHARES[p] / total for p in products}
        self._committed = dict.fromkeys(products, 0)
        # a small organisation still gets (small) webinars
        self._webinar_min = max(2, min(_WEBINAR_MIN, math.floor(self._targets.get("webinar", 0.0))))
        self._org = Organisation(sites, rng, staff=2 * size, phone="phone" in products)
        self.incidents = self._org.incidents
        self._start = float(start)
        self._start_ms = round(start * 1000)
        self._elapsed = 0.0
        self._heap: list[tuple[int, int, Callable[[int], None]]] = []
        self._seq = 0
        self._out: list[Emitted] = []
        self._next_pid = 16_777_216 + rng.randrange(65_536)
        self._population = 0
        self._webinars: list[_Activity] = []
        self._rooms = 0  # room systems in meetings right now
        self._at(self._start_ms, self._control)

    # -- public ---------------------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Simulated Unix time in seconds."""
        return self._start + self._elapsed

    @property
    def population(self) -> int:
        """Participants connected right now (each phone call counts two legs)."""
        return self._population

    def advance(self, seconds: float) -> list[Emitted]:
        """Advance simulated time by `seconds`; return every event due in that interval, in time order."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"cannot advance by {seconds!r} seconds")
        self._elapsed += seconds
        end = self._start_ms + round(self._elapsed * 1000)
        heap = self._heap
        out = self._out = []
        while heap and heap[0][0] < end:
            t, _, action = heapq.heappop(heap)
            action(t)
        self._out = []
        return out

    # -- plumbing -------------------------------------------------------------------------------------------

    def _at(self, t: int, action: Callable[[int], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, action))

    def _emit(self, account: SimAccount, event: str, t: int, obj: Json) -> None:
        body = orjson.dumps(
            {"event": event, "event_ts": t, "payload": {"account_id": account.account_id, "object": obj}}
        )
        self._out.append(Emitted(account.name, event, body))

    def _style(self) -> int:
        r = self._rng.random()
        return 0 if r < 0.92 else 1 if r < 0.96 else 2

    def _offset(self, t: int) -> float:
        return (t - self._start_ms) / 1000

    def _b64id(self) -> str:
        return base64.b64encode(self._rng.randbytes(16)).decode()

    # -- population control ---------------------------------------------------------------------------------

    def _control(self, t: int) -> None:
        initial = t == self._start_ms
        for product, target in self._targets.items():
            for _ in range(10_000):
                deficit = target - self._committed[product]
                if deficit <= 0 or not self._start_activity(product, t, deficit, initial):
                    break
        self._at(t + _CONTROL_MS, self._control)

    def _start_activity(self, product: str, t: int, deficit: float, initial: bool) -> bool:
        rng = self._rng
        account = rng.choice(self._accounts[product])
        if product == "phone":
            return self._start_call(account, t, initial)
        if product == "meeting":
            size = max(2, min(2 + int(rng.expovariate(1 / 5)), 25, math.ceil(deficit) + 1))
            minutes = rng.choice((15, 20, 25, 30, 30, 45, 45, 60))
        elif product == "webinar":
            least = self._webinar_min
            if deficit < least and self._top_up_webinar(t, deficit):
                return True
            if deficit < least / 2:
                return False
            size = max(least, min(rng.randint(_WEBINAR_MIN, 150), math.ceil(deficit) + 1))
            minutes = rng.choice((30, 45, 60, 60, 90))
        else:
            size = 2 if rng.random() < 0.6 else rng.randint(3, 6)
            size = max(2, min(size, math.ceil(deficit) + 1))
            minutes = rng.choice((10, 15, 20, 30, 40))
        duration = minutes * _MINUTE + rng.randint(-_MINUTE, 2 * _MINUTE)
        if initial:  # already under way at t=0: only the rest of it is left
            duration = max(6 * _MINUTE, int(duration * rng.uniform(0.2, 1.0)))
        end = t + duration
        if product == "session":
            number = rng.randint(1000, 9999)
            group = size > 2
            act = _Activity(
                "session",
                account,
                self._b64id(),
                f"{'group-therapy' if group else 'tele-consult'}-{number}",
                f"{'GT' if group else 'TC'}{number}",
                end,
                size,
            )
        else:
            first = "8" if product == "meeting" else "9"
            act = _Activity(product, account, self._b64id(), f"{first}{rng.randint(10**9, 10**10 - 1)}", "", end, size)
        # a meeting room (H.323/SIP via the Cloud Room Connector) in some meetings, and nearly always in one
        room = product == "meeting" and size >= 4 and (self._rooms == 0 or rng.random() < 0.3)
        panelists = rng.randint(1, 3) if product == "webinar" else 0
        if product == "webinar":
            self._webinars.append(act)
        self._at(end - _WIND_DOWN_MS, partial(self._on_wind_down, act))
        self._add_people(act, t, range(size), initial=initial, panelists=panelists, room=room)
        return True

    def _on_wind_down(self, act: _Activity, t: int) -> None:
        """Shortly before an activity ends, let the controller start its successors (they take time to fill)."""
        act.winding_down = True
        self._committed[act.kind] -= len(act.present) + act.pending

    def _top_up_webinar(self, t: int, deficit: float) -> bool:
        """Late attendees for a running webinar; False when none has long enough left."""
        self._webinars = live = [w for w in self._webinars if w.end_ms > t]
        for act in reversed(live):
            if act.end_ms - t > 8 * _MINUTE:
                count = math.ceil(deficit)
                act.size += count
                self._add_people(act, t, range(1_000, 1_000 + count), initial=False, panelists=0, room=False)
                return True
        return False

    def _add_people(self, act: _Activity, t: int, indexes: range, *, initial: bool, panelists: int, room: bool) -> None:
        rng = self._rng
        org = self._org
        end = act.end_ms
        webinar = act.kind == "webinar"
        for i in indexes:
            if webinar:
                role = "host" if i == 0 else "panelist" if i < panelists else "attendee"
            else:
                role = "host" if i == 0 else "member"
            if room and i == 1:
                person = org.room_system()
                self._rooms += 1
            elif role == "attendee":
                person = org.guest() if rng.random() < 0.75 else org.employee()
            elif act.kind == "session":
                person = org.employee(office=True) if i == 0 else org.guest()
            elif role != "member":
                person = org.employee(office=True)
            else:
                person = org.guest() if rng.random() < 0.2 else org.employee()
            if initial:
                join = t + rng.randint(0, 60_000)
            elif i == 0:
                join = t + rng.randint(0, 20_000)
            else:
                join = t + rng.randint(5_000, 180_000 if webinar else 120_000)
            if i > 1 and rng.random() < 0.1 and end - t > 12 * _MINUTE:  # late joiner
                join = rng.randint(t + 3 * _MINUTE, end - 6 * _MINUTE)
            early = 0.35 if role == "attendee" else 0.15
            if role != "host" and rng.random() < early:
                leave = rng.randint(join + 2 * _MINUTE, end - _MINUTE)
            else:
                leave = end + rng.randint(0, 25_000)
            self._plan(act, person, role, join, leave)

    def _plan(self, act: _Activity, person: Person, role: str, join: int, leave: int) -> None:
        rng = self._rng
        self._next_pid += rng.randint(1, 4096)
        if person.room_system or role == "attendee":
            camera = _CAM_ON if person.room_system else _CAM_OMIT
        else:
            r = rng.random()
            camera = _CAM_ON if r < 0.76 else _CAM_OMIT if r < 0.84 else _CAM_EMPTY if r < 0.92 else _CAM_ZERO
        if person.network == "Cellular":
            resolution = "640*360"
        elif person.network == "Wired" and rng.random() < 0.3:
            resolution = "1920*1080"
        else:
            resolution = "1280*720"
        view = "640*360" if act.size > 4 and rng.random() < 0.6 else rng.choice(_SPEAKER_VIEW)
        if act.kind == "session":
            user_key = f"clin-{person.index:04d}" if role == "host" else f"pat-{rng.randint(1000, 9999)}"
        else:
            user_key = ""
        p = _Participant(
            activity=act,
            person=person,
            pid=str(self._next_pid),
            role=role,
            leave_ms=leave,
            tick_ms=rng.randint(500, 9_000),
            camera=camera,
            resolution=resolution,
            view=view,
            empty_share=rng.random() < 0.1,
            user_key=user_key,
        )
        act.pending += 1
        self._committed[act.kind] += 1
        self._at(join, partial(self._on_join, p))
        self._at(leave, partial(self._on_leave, p))

    # -- meeting / webinar / session participants -----------------------------------------------------------

    def _on_join(self, p: _Participant, t: int) -> None:
        rng = self._rng
        act = p.activity
        act.pending -= 1
        act.present.append(p)
        self._population += 1
        p.link = self._org.link(p.person)
        p.data = self._data_element(p, len(act.present) + act.pending)
        self._emit_data(p, t, summary=False)
        self._at((t // _MINUTE + 1) * _MINUTE + p.tick_ms, partial(self._on_qos, p))
        if rng.random() < 0.25 and p.leave_ms - t > 4 * _MINUTE:
            self._at(rng.randint(t + _MINUTE, p.leave_ms - 2 * _MINUTE), partial(self._on_change, p))

    def _on_change(self, p: _Participant, t: int) -> None:
        if p.left:
            return
        mic, speaker, camera = self._org.peripherals(p.person)
        p.data = {**p.data, "microphone": mic, "speaker": speaker, "camera": camera}
        self._emit_data(p, t, summary=False)

    def _on_leave(self, p: _Participant, t: int) -> None:
        act = p.activity
        p.left = True
        act.present.remove(p)
        if act.sharer is p:
            act.sharer, act.share_until = None, t
        if not act.winding_down:
            self._committed[act.kind] -= 1
        self._population -= 1
        self._org.release(p.person)
        if p.person.room_system:
            self._rooms -= 1
        if p.records:
            self._emit_qos_summary(p, t)
        self._at(t + self._rng.randint(40, 150), partial(self._emit_data, p, summary=True))

    def _data_element(self, p: _Participant, size: int) -> dict[str, str]:
        rng = self._rng
        person = p.person
        assert p.link is not None
        ip = person.internal_ip
        r = rng.random()
        if size == 2 and p.activity.kind == "meeting" and r < 0.4:
            connection = "P2P"
        else:
            connection = "TCP" if r > (0.7 if person.network == "Cellular" else 0.87) else "UDP"
        media = rng.randint(50_000, 64_000)
        return {
            "device": person.device,
            "location": person.location,
            "network_type": person.network,
            "microphone": person.microphone,
            "speaker": person.speaker,
            "camera": person.camera,
            "data_center": p.link.data_centre,
            "connection_type": connection,
            "pc_name": person.pc_name,
            "domain": person.domain,
            "mac_addr": person.mac_addr,
            "harddisk_id": person.harddisk_id,
            "version": person.version,
            "signaling_ip_address": person.public_ip,
            "signaling_internal_ip_address": ip,
            "signaling_internal_ip_port": str(rng.randint(49_152, 65_000)),
            "audio_internal_ip_address": ip,
            "audio_internal_ip_port": str(media),
            "video_internal_ip_address": ip,
            "video_internal_ip_port": str(media + 1),
            "as_internal_ip_address": ip,
            "as_internal_ip_port": str(media + 2),
            "destination_ip_domain": self._org.destination(p.link.data_centre),
            "destination_ip_port": "443" if connection == "TCP" else "8801",
        }

    def _emit_data(self, p: _Participant, t: int, *, summary: bool) -> None:
        act = p.activity
        person = p.person
        data = p.data
        if summary and act.kind != "webinar":
            if act.kind == "session" and person.device in ("iOS", "Android"):
                client, detail = f"Video SDK {person.device} 1.12.10", person.device_detail
            elif act.kind == "session":
                client = "Web video sdk 2.3.0"
                detail = person.device_detail if person.web_client else "GoogleChrome 141"
            else:
                client, detail = person.client, person.device_detail
            data = {**data, "device_detail": detail, "client": client}
        if act.kind == "session":
            obj: Json = self._session_object(act)
            obj["user"] = {**self._session_user(p), "data": [data]}
            self._emit(act.account, "session.user_data_summary" if summary else "session.user_data", t, obj)
            return
        obj = {"uuid": act.uuid}
        if summary and act.kind == "meeting":
            obj["id"] = act.number
        obj["participant"] = {
            "participant_id": p.pid,
            "participant_user_id": person.user_id,
            "email": person.email,
            "data": [data],
        }
        suffix = "participant_data_summary" if summary else "participant_data"
        self._emit(act.account, f"{act.kind}.{suffix}", t, obj)

    @staticmethod
    def _session_object(act: _Activity) -> Json:
        return {"session_id": act.uuid, "session_name": act.number, "session_key": act.session_key}

    @staticmethod
    def _session_user(p: _Participant) -> Json:
        name = f"Dr. {p.person.name}" if p.role == "host" else p.person.name
        return {"id": p.pid, "name": name, "user_key": p.user_key, "is_original_host": p.role == "host"}

    def _sharer(self, act: _Activity, t: int) -> _Participant | None:
        if t >= act.share_until:
            rng = self._rng
            chance = {"meeting": 0.45, "webinar": 0.6, "session": 0.25}[act.kind]
            candidates = [p for p in act.present if p.sender and not p.person.room_system]
            if candidates and rng.random() < chance:
                act.sharer = rng.choice(candidates)
                act.share_until = t + rng.randint(3 * _MINUTE, 10 * _MINUTE)
            else:
                act.sharer = None
                act.share_until = t + rng.randint(2 * _MINUTE, 6 * _MINUTE)
        return act.sharer

    def _stream(
        self,
        p: _Participant,
        qos: list[Json],
        dt: str,
        style: int,
        kind: str,
        c: Conditions,
        bitrate: float,
        resolution: str = "",
        fps: float = -1.0,
    ) -> None:
        rng = self._rng
        latency = c.latency * rng.uniform(0.95, 1.06)
        jitter = max(0.5, c.jitter * rng.uniform(0.8, 1.25))
        loss = c.loss * rng.uniform(0.75, 1.25)
        max_loss = loss * rng.uniform(2.0, 4.5) + rng.uniform(0.0, 0.4)
        details = {
            "bitrate": f"{round(bitrate)}{_KBPS[style]}",
            "latency": f"{round(latency)}{_MS[style]}",
            "jitter": f"{round(jitter)}{_MS[style]}",
            "avg_loss": f"{loss:.1f}%",
            "max_loss": f"{max_loss:.1f}%",
        }
        video = fps >= 0
        if video:
            details["resolution"] = resolution
            details["frame_rate"] = f"{round(fps)}{_FPS[style]}"
        qos.append({"date_time": dt, "type": kind, "details": details})
        acc = p.stats.get(kind)
        if not isinstance(acc, _StreamAcc):
            acc = p.stats[kind] = _StreamAcc(video)
        acc.add(bitrate, latency, jitter, loss, max_loss, max(fps, 0.0), resolution)

    def _idle_stream(self, p: _Participant, qos: list[Json], dt: str, style: int, kind: str, *, video: bool) -> None:
        """A stream that carries nothing: zeros, or (empty=True for video) Zoom's empty strings."""
        if video and p.camera == _CAM_EMPTY and kind == "video_input":
            details = _EMPTY_VIDEO
        else:
            details = {
                "bitrate": f"0{_KBPS[style]}",
                "latency": f"0{_MS[style]}",
                "jitter": f"0{_MS[style]}",
                "avg_loss": "0.0%",
                "max_loss": "0.0%",
            }
            if video:
                details = {**details, "resolution": "", "frame_rate": f"0{_FPS[style]}"}
        qos.append({"date_time": dt, "type": kind, "details": details})
        acc = p.stats.get(kind)
        if not isinstance(acc, _StreamAcc):
            acc = p.stats[kind] = _StreamAcc(video)
        acc.add(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "")

    def _score(self, p: _Participant, qos: list[Json], dt: str, kind: str, score: float) -> None:
        score = round(min(5.0, max(1.0, score)), 2)
        qos.append(
            {
                "date_time": dt,
                "type": kind,
                "details": {"quality": quality_label(score), "quality_score": f"{score:.2f}"},
            }
        )
        acc = p.stats.get(kind)
        if not isinstance(acc, _ScoreAcc):
            acc = p.stats[kind] = _ScoreAcc()
        acc.n += 1
        acc.total += score

    def _on_qos(self, p: _Participant, t: int) -> None:
        if p.left:
            return
        assert p.link is not None
        rng = self._rng
        act = p.activity
        person = p.person
        c = self._org.conditions(p.link, self._offset(t))
        style = self._style()
        dt = _iso(t // _MINUTE * 60)
        qos: list[Json] = []
        bad = c.loss > 3.0
        slow = c.latency > 180.0
        sender = p.sender

        if sender:
            self._stream(
                p, qos, dt, style, "audio_input", c, rng.uniform(20.0, 40.0) if bad else rng.uniform(22.0, 58.0)
            )
        else:
            self._idle_stream(p, qos, dt, style, "audio_input", video=False)
        self._stream(p, qos, dt, style, "audio_output", c, rng.uniform(20.0, 50.0))

        fps_lo, fps_hi = (9.0, 16.0) if bad else (16.0, 26.0) if slow else (24.0, 30.0)
        if sender:
            if p.camera == _CAM_ON:
                res = "640*360" if bad else p.resolution
                lo, hi = _VIDEO_KBPS[res]
                br = rng.uniform(lo, hi) * (0.55 if bad else 1.0)
                self._stream(p, qos, dt, style, "video_input", c, br, res, rng.uniform(fps_lo, fps_hi))
            elif p.camera != _CAM_OMIT:
                self._idle_stream(p, qos, dt, style, "video_input", video=True)
        view = "640*360" if bad else p.view
        lo, hi = _VIDEO_KBPS[view]
        br = rng.uniform(lo, hi) * (0.5 if bad else 1.0)
        self._stream(p, qos, dt, style, "video_output", c, br, view, rng.uniform(fps_lo, fps_hi))

        sharer = self._sharer(act, t)
        if sharer is not None:
            kind = "as_input" if sharer is p else "as_output"
            share_fps = rng.uniform(4.0, 8.0) if bad else rng.uniform(8.0, 15.0)
            self._stream(p, qos, dt, style, kind, c, rng.uniform(150.0, 900.0), "1920*1080", share_fps)
        elif p.empty_share:
            qos.append({"date_time": dt, "type": "as_input", "details": _EMPTY_VIDEO})

        if person.web_client and act.kind != "session":
            if sender:
                self._stream(p, qos, dt, style, "audio_device_from_rwg", c, rng.uniform(22.0, 50.0))
            self._stream(p, qos, dt, style, "audio_device_to_rwg", c, rng.uniform(20.0, 45.0))
        if person.room_system:
            self._stream(p, qos, dt, style, "audio_device_from_crc", c, rng.uniform(40.0, 64.0))
            self._stream(p, qos, dt, style, "audio_device_to_crc", c, rng.uniform(40.0, 64.0))
            self._stream(p, qos, dt, style, "video_device_from_crc", c, rng.uniform(900.0, 1800.0), "1280*720", 30.0)
            self._stream(p, qos, dt, style, "video_device_to_crc", c, rng.uniform(700.0, 1500.0), "1280*720", 30.0)

        self._cpu(p, qos, dt, sharer is p)

        audio = mos(c.latency, c.jitter, c.loss) + rng.uniform(-0.08, 0.08)
        self._score(p, qos, dt, "audio_quality", audio)
        if sender and p.camera == _CAM_ON:
            self._score(p, qos, dt, "video_quality", audio - rng.uniform(0.05, 0.3) - (0.4 if bad else 0.0))
        if sharer is not None:
            self._score(p, qos, dt, "as_quality", audio - rng.uniform(0.0, 0.2))

        if person.network == "Wifi":
            self._rssi(p, qos, dt, c.rssi)
        if c.unstable and rng.random() < 0.75:
            note = "internet connection unstable"
        elif (bad or person.network == "Cellular") and rng.random() < 0.08:
            note = "network bandwidth low"
        else:
            note = ""
        if note:
            qos.append({"date_time": dt, "type": "notification", "details": {"network_notification": note}})

        p.records += 1
        if act.kind == "session":
            obj = self._session_object(act)
            obj["user"] = {**self._session_user(p), "qos": qos}
            self._emit(act.account, "session.user_qos", t, obj)
        else:
            participant = {"user_id": p.pid, "participant_user_id": person.user_id, "email": person.email, "qos": qos}
            self._emit(act.account, f"{act.kind}.participant_qos", t, {"uuid": act.uuid, "participant": participant})
        if t + _MINUTE < p.leave_ms:
            self._at(t + _MINUTE, partial(self._on_qos, p))

    def _cpu(self, p: _Participant, qos: list[Json], dt: str, sharing: bool) -> None:
        rng = self._rng
        person = p.person
        avg = person.cpu_base * rng.uniform(0.8, 1.25) + (3.0 if p.camera == _CAM_ON else 0.0) + (5.0 if sharing else 0)
        low = avg * rng.uniform(0.3, 0.6)
        high = min(100.0, avg * rng.uniform(1.5, 2.5))
        system = min(100.0, max(high, avg * rng.uniform(1.8, 3.2) + 8.0))
        details = {
            "zoom_min_cpu_usage": f"{round(low)}%",
            "zoom_avg_cpu_usage": f"{round(avg)}%",
            "zoom_max_cpu_usage": f"{round(high)}%",
            "system_max_cpu_usage": f"{round(system)}%",
        }
        acc = p.stats.get("cpu_usage")
        if not isinstance(acc, _CpuAcc):
            acc = p.stats["cpu_usage"] = _CpuAcc()
        if person.cpu_pressure:
            top = _pressure(system)
            mid = _pressure(system * 0.7)
            details["system_min_cpu_pressure_level"] = "normal"
            details["system_avg_cpu_pressure_level"] = _PRESSURE[mid]
            details["system_max_cpu_pressure_level"] = _PRESSURE[top]
            acc.levels.extend((0, mid, top))
        qos.append({"date_time": dt, "type": "cpu_usage", "details": details})
        acc.n += 1
        acc.min = min(acc.min, low)
        acc.avg += avg
        acc.max = max(acc.max, high)
        acc.system = max(acc.system, system)

    def _rssi(self, p: _Participant, qos: list[Json], dt: str, avg: float) -> None:
        rng = self._rng
        low = round(avg - rng.uniform(3.0, 10.0))
        high = min(-30, round(avg + rng.uniform(3.0, 8.0)))
        mean = round(avg)
        details = {"min_rssi": str(low), "avg_rssi": str(mean), "max_rssi": str(high), "rssi_unit": "dBm"}
        qos.append({"date_time": dt, "type": "wifi_rssi", "details": details})
        acc = p.stats.get("wifi_rssi")
        if not isinstance(acc, _RssiAcc):
            acc = p.stats["wifi_rssi"] = _RssiAcc()
        acc.n += 1
        acc.min = min(acc.min, low)
        acc.avg += mean
        acc.max = max(acc.max, high)

    def _emit_qos_summary(self, p: _Participant, t: int) -> None:
        act = p.activity
        person = p.person
        style = self._style()
        qos: list[Json] = []
        for kind, acc in p.stats.items():
            summary = acc.summary(style) if isinstance(acc, _StreamAcc) else acc.summary()
            qos.append({"type": kind, "details": summary})
        if act.kind == "session":
            obj = self._session_object(act)
            obj["user"] = {**self._session_user(p), "qos": qos}
            self._emit(act.account, "session.user_qos_summary", t, obj)
            return
        participant: Json = {
            "participant_id": p.pid,
            "user_name": person.name,
            "id": person.user_id,
            "email": person.email,
            "qos": qos,
        }
        obj = {"uuid": act.uuid, "id": act.number, "participant": participant}
        self._emit(act.account, f"{act.kind}.participant_qos_summary", t, obj)

    # -- Zoom Phone -----------------------------------------------------------------------------------------

    def _start_call(self, account: SimAccount, t: int, initial: bool) -> bool:
        rng = self._rng
        org = self._org
        duration = 45_000 + min(int(rng.expovariate(1 / 200_000)), 25 * _MINUTE)
        start = t + (rng.randint(0, 20_000) if initial else rng.randint(0, 5_000))
        legs: list[_Leg] = []
        for kind in ("caller", "callee"):
            person = org.employee()
            if person.network in ("Wifi", "Cellular"):
                network = "VPN" if person.site.remote and rng.random() < 0.3 else "WiFi"
            else:
                network = "VPN" if person.site.remote else "LAN"
            legs.append(_Leg(kind, person, org.phone_link(person), network))
        call = _Call(account, str(rng.randint(10**18, 10**19 - 1)), start, start + duration, (legs[0], legs[1]))
        self._committed["phone"] += 2
        self._population += 2
        self._at(start + _PHONE_TICK_MS + rng.randint(0, 2_000), partial(self._on_call_tick, call))
        self._at(call.end_ms, partial(self._on_call_end, call))
        return True

    def _on_call_tick(self, call: _Call, t: int) -> None:
        if t >= call.end_ms:
            return
        offset = self._offset(t)
        conds = [self._org.phone_conditions(leg.link, offset) for leg in call.legs]
        dt = _iso(t // 1000)
        start = _iso(call.start_ms // 1000)
        for i, leg in enumerate(call.legs):
            for direction, details in self._phone_details(leg, conds[i], conds[1 - i]):
                obj: Json = {
                    "call_id": call.call_id,
                    "call_start_time": start,
                    "call_qos": {
                        "type": leg.kind,
                        "id": leg.person.user_id,
                        "user_email": leg.person.email,
                        "qos": {"date_time": dt, "type": direction, "details": details},
                    },
                }
                self._emit(call.account, "phone.call_qos", t, obj)
        nxt = t + _PHONE_TICK_MS + self._rng.randint(-1_500, 1_500)
        if nxt < call.end_ms:
            self._at(nxt, partial(self._on_call_tick, call))

    def _phone_details(self, leg: _Leg, own: Conditions, other: Conditions) -> list[tuple[str, dict[str, str]]]:
        rng = self._rng
        out: list[tuple[str, dict[str, str]]] = []
        paths = (
            ("sending", own.latency, own.jitter, own.loss),
            ("receiving", other.latency + own.latency * 0.3, max(own.jitter, other.jitter), other.loss + own.loss / 2),
        )
        for direction, delay, jitter, loss in paths:
            max_loss = loss * rng.uniform(2.0, 5.0) + rng.uniform(0.0, 0.5)
            score = max(1.0, min(4.5, mos(delay, jitter, loss) + rng.uniform(-0.1, 0.1)))
            bitrate = float(rng.randint(28, 36))
            totals = leg.totals.setdefault(direction, [0.0] * 7)
            for j, v in enumerate((1.0, bitrate, loss, max_loss, jitter, delay, score)):
                totals[j] = max(totals[j], v) if j == 3 else totals[j] + v
            out.append((direction, self._phone_dict(bitrate, loss, max_loss, jitter, delay, score, leg.network)))
        return out

    @staticmethod
    def _phone_dict(
        bitrate: float, loss: float, max_loss: float, jitter: float, delay: float, score: float, network: str
    ) -> dict[str, str]:
        return {
            "bitrate": str(round(bitrate)),
            "avg_loss": f"{loss:.1f}",
            "max_loss": f"{max_loss:.1f}",
            "jitter": str(round(jitter)),
            "network_delay": str(round(delay)),
            "mos": f"{score:.1f}",
            "network": network,
        }

    def _on_call_end(self, call: _Call, t: int) -> None:
        self._committed["phone"] -= 2
        self._population -= 2
        offset = self._offset(t)
        dt = _iso(t // _MINUTE * 60)
        legs: list[Json] = []
        for i, leg in enumerate(call.legs):
            if not leg.totals:  # too short for any interval report: summarise one measurement
                own = self._org.phone_conditions(leg.link, offset)
                other = self._org.phone_conditions(call.legs[1 - i].link, offset)
                self._phone_details(leg, own, other)
            qos: list[Json] = []
            for direction, tot in leg.totals.items():
                n = tot[0]
                details = self._phone_dict(
                    tot[1] / n, tot[2] / n, tot[3], tot[4] / n, tot[5] / n, tot[6] / n, leg.network
                )
                qos.append({"date_time": dt, "type": direction, "details": details})
            legs.append({"type": leg.kind, "user_id": leg.person.user_id, "user_email": leg.person.email, "qos": qos})
            self._org.release(leg.person)
        obj: Json = {
            "call_id": call.call_id,
            "call_start_time": _iso(call.start_ms // 1000),
            "call_end_time": _iso(t // 1000),
            "call_qos": legs,
        }
        self._emit(call.account, "phone.call_qos_summary", t, obj)
