"""Typed, immutable records that every source (webhook, WebSocket, poller, replay, demo) produces.

Values are already in base units: seconds, bytes per second, ratios 0-1, dBm. A field that Zoom
left empty, sent unparsable or implausible is None; each refused value (and each refused entry) is
listed in `parse_errors` as a (field, reason) pair. A zero that is no measurement (zoom/measured.py)
is None too, its field listed in `unmeasured`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

__all__ = [
    "NO_IDENTITY",
    "CpuUsage",
    "DedupeKey",
    "InvalidEvent",
    "MeetingEvent",
    "ParseError",
    "ParticipantIdentity",
    "ParticipantInfo",
    "PhoneQosRecord",
    "PhoneSample",
    "Product",
    "QosRecord",
    "QualityGrade",
    "Record",
    "StreamSample",
    "StreamSummary",
    "SummaryRecord",
    "UnknownEvent",
    "UrlValidation",
]

# Small per-entry values are NamedTuples (built ~3x faster than slotted dataclasses: a QoS event
# carries a dozen of them); whole events are frozen dataclasses.

Product = Literal["meeting", "webinar", "session"]
Media = Literal["audio", "video", "share"]
Quality = Literal["good", "fair", "poor", "bad"]
DedupeKey = tuple[object, ...]  # str and int, and a QoS record's content (tuples of values): dedupe.digest
ParseError = tuple[str, str]  # (field, reason): a label set of zoom_qss_parse_errors_total


class ParticipantIdentity(NamedTuple):
    """Who a participant is, as Zoom sent it ("" when absent). Personal data: it stays inside the agent.

    Only detail mode reads it (allowlist matching by keyed hash, and the opted-in plain name label);
    no output exports these values.
    """

    user_id: str  # account user id (`participant_user_id`, `id`; Video SDK `user_key`); "" for guests
    email: str
    name: str  # display name (`user_name`, Video SDK `name`); real-time meeting events carry none


NO_IDENTITY = ParticipantIdentity("", "", "")


class StreamSample(NamedTuple):
    """One media stream of one participant for one minute (a real-time qos[] entry)."""

    media: Media
    direction: str  # input/output on path client; from/to on paths crc and rwg (Zoom's own words)
    path: str  # client, crc, rwg
    bitrate: float | None
    latency: float | None
    jitter: float | None
    avg_loss: float | None
    max_loss: float | None
    frame_rate: float | None
    height: float | None


class QualityGrade(NamedTuple):
    """Zoom's own grade of a media for one minute (`audio_quality`, `video_quality`, `as_quality`)."""

    media: Media
    quality: Quality | None
    score: float | None


class CpuUsage(NamedTuple):
    """Client CPU as ratios 0-1 (Zoom sends percent)."""

    zoom_avg: float | None
    zoom_max: float | None
    system_max: float | None


@dataclass(frozen=True, slots=True)
class QosRecord:
    """`meeting|webinar.participant_qos` or `session.user_qos`: one participant, one minute."""

    event: str
    account_id: str
    product: Product
    instance: str  # meeting/webinar uuid or Video SDK session_id
    participant_id: str  # per-instance participant id
    event_time: float | None  # event_ts in seconds
    dedupe_key: DedupeKey
    streams: tuple[StreamSample, ...]
    grades: tuple[QualityGrade, ...]
    cpu: CpuUsage | None
    rssi_dbm: float | None  # average Wi-Fi RSSI
    notifications: tuple[str, ...]
    parse_errors: tuple[ParseError, ...]
    identity: ParticipantIdentity = NO_IDENTITY
    unmeasured: tuple[str, ...] = ()  # fields whose zero was not a measurement (zoom/measured.py)
    record_time: float | None = None  # when Zoom made it: event_ts, else the latest date_time (seconds)


class StreamSummary(NamedTuple):
    """Whole-session statistics of one media stream of one participant."""

    media: Media
    direction: str
    path: str
    avg_bitrate: float | None
    max_bitrate: float | None
    avg_latency: float | None
    max_latency: float | None
    avg_jitter: float | None
    max_jitter: float | None
    avg_loss: float | None
    max_loss: float | None


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """`*_qos_summary`: one participant's whole session, sent when they leave (or polled later)."""

    event: str
    account_id: str
    product: Product
    instance: str
    participant_id: str
    event_time: float | None
    dedupe_key: DedupeKey
    streams: tuple[StreamSummary, ...]
    grades: tuple[QualityGrade, ...]
    parse_errors: tuple[ParseError, ...]
    identity: ParticipantIdentity = NO_IDENTITY
    meeting_number: str = ""  # `object.id` (meetings and webinars), "" when Zoom left it out
    unmeasured: tuple[str, ...] = ()
    # Video SDK: who the summary is about in terms webhook and REST share (a digest of `user_key`, else
    # of the name; "" when neither is known), since their ids differ (zoom/summaries.py).
    match: str = ""


@dataclass(frozen=True, slots=True)
class ParticipantInfo:
    """`*_data` / `*_data_summary`: what a participant joined with. Feeds enrichment labels only.

    `addresses` (signalling and LAN IPs) exist only to map the participant to an operator-defined
    site; they are never exported.
    """

    event: str
    account_id: str
    product: Product
    instance: str
    participant_id: str
    event_time: float | None
    dedupe_key: DedupeKey
    network_type: str | None  # normalised: wired, wifi, cellular, ppp, other
    client_os: str | None  # normalised from `device`
    client_version: str | None  # major.minor of `version`
    data_center: str | None
    addresses: tuple[str, ...]
    final: bool  # a *_data_summary: the participant has left
    identity: ParticipantIdentity = NO_IDENTITY
    meeting_number: str = ""
    parse_errors: tuple[ParseError, ...] = ()


class PhoneSample(NamedTuple):
    """One Zoom Phone QoS sample of one call leg in one direction."""

    leg: str  # caller, callee
    direction: str  # sending, receiving
    sample_time: str  # Zoom's date_time, part of the sample's identity
    mos: float | None
    latency: float | None  # network_delay
    jitter: float | None
    avg_loss: float | None
    max_loss: float | None
    bitrate: float | None


@dataclass(frozen=True, slots=True)
class PhoneQosRecord:
    """`phone.call_qos` (one sample) or `phone.call_qos_summary` (all legs, call ended)."""

    event: str
    account_id: str
    call_id: str
    event_time: float | None
    dedupe_key: DedupeKey
    ended: bool
    samples: tuple[PhoneSample, ...]
    parse_errors: tuple[ParseError, ...]
    unmeasured: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MeetingEvent:
    """An ordinary meeting / webinar / Video SDK session event (not QSS): context for detail mode.

    `meeting.started|ended`, `meeting.participant_joined|left`, the `webinar.*` equivalents and
    `session.started|ended`, `session.user_joined|left`. `kind` is started, ended, joined or left;
    `participant_id` is the per-instance id ("" for started and ended).
    """

    event: str
    account_id: str
    product: Product
    instance: str
    kind: Literal["started", "ended", "joined", "left"]
    participant_id: str
    event_time: float | None
    dedupe_key: DedupeKey
    meeting_number: str  # "" when absent (Video SDK sessions have none)
    topic: str  # meeting / webinar topic, Video SDK session_name; "" when absent
    identity: ParticipantIdentity = NO_IDENTITY


@dataclass(frozen=True, slots=True)
class UrlValidation:
    """`endpoint.url_validation`: Zoom asks us to prove we hold the secret token."""

    plain_token: str


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """A well-formed envelope whose event this version does not know (counted, not an error)."""

    event: str


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """A body that is not a usable event; `field` names what was missing or wrong."""

    event: str
    field: str


Record = QosRecord | SummaryRecord | ParticipantInfo | PhoneQosRecord | MeetingEvent
