"""Every metric family the exporter exposes, declared once: the code side of docs/metrics.md.

Label sets are fixed here at start-up (the enrichment labels come from the configuration), and
default buckets follow the design's METRICS.md; any family's buckets can be overridden.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qss_exporter import __version__
from qss_exporter.store import CallbackFamily, CounterFamily, GaugeFamily, HistogramFamily, Sample, Store

__all__ = [
    "CPU_MEASURES",
    "DEFAULT_BUCKETS",
    "LISTENERS",
    "LISTENER_REJECTIONS",
    "POLL_OUTCOMES",
    "SUMMARY_STATS",
    "TOKEN_OUTCOMES",
    "WEBHOOK_OUTCOMES",
    "WEBSOCKET_CONNECT_FAILURES",
    "WEBSOCKET_EVENT_OUTCOMES",
    "WEBSOCKET_MODULES",
    "WEBSOCKET_RECONNECTS",
    "ApiFamilies",
    "Catalogue",
    "WebSocketFamilies",
]

_LATENCY = (0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)
_LOSS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
_BITRATE = (2500, 5000, 10000, 25000, 50000, 125000, 250000, 500000, 1000000)
_SCORE = (1, 2, 2.5, 3, 3.5, 4, 4.5, 5)

DEFAULT_BUCKETS: dict[str, tuple[float, ...]] = {
    "zoom_qss_media_latency_seconds": _LATENCY,
    "zoom_qss_media_jitter_seconds": _LATENCY,
    "zoom_qss_media_packet_loss_ratio": _LOSS,
    "zoom_qss_media_max_packet_loss_ratio": _LOSS,
    "zoom_qss_media_bitrate_bytes_per_second": _BITRATE,
    "zoom_qss_media_frames_per_second": (5, 10, 15, 20, 25, 30),
    "zoom_qss_media_frame_height_pixels": (180, 360, 540, 720, 1080, 2160),
    "zoom_qss_quality_score": _SCORE,
    "zoom_qss_cpu_usage_ratio": (0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1),
    "zoom_qss_wifi_rssi_dbm": (-90, -80, -70, -67, -60, -50, -30),
    "zoom_qss_phone_mos": _SCORE,
    "zoom_qss_phone_latency_seconds": _LATENCY,
    "zoom_qss_phone_jitter_seconds": _LATENCY,
    "zoom_qss_phone_packet_loss_ratio": _LOSS,
    "zoom_qss_phone_bitrate_bytes_per_second": _BITRATE,
    "zoom_qss_participant_session_latency_seconds": _LATENCY,
    "zoom_qss_participant_session_jitter_seconds": _LATENCY,
    "zoom_qss_participant_session_packet_loss_ratio": _LOSS,
    "zoom_qss_participant_session_bitrate_bytes_per_second": _BITRATE,
    "zoom_qss_event_lag_seconds": (1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200),
}

WEBHOOK_OUTCOMES = (
    "accepted",
    "url_validation",
    "duplicate",
    "unknown_event",
    "bad_signature",
    "missing_signature",
    "stale_timestamp",
    "malformed",
    "too_large",
    "overloaded",
    "unknown_account",
    "account_mismatch",
    "error",
)

# Refused by a listener's guard before the application saw the request (server/guard.py).
LISTENER_REJECTIONS = (
    "connection_limit",
    "evicted",
    "header_timeout",
    "body_timeout",
    "headers_too_large",
    "too_many_headers",
    "bad_request",
    "client_not_allowed",
)
LISTENERS = ("webhook", "metrics")

_STREAM = ("account", "product", "media", "direction", "path")
# The values of `measure` (zoom_qss_cpu_usage_ratio) and `stat` (the session summaries) pipeline.py records.
CPU_MEASURES = ("zoom_avg", "zoom_max", "system_max")
SUMMARY_STATS = ("avg", "max")

# Zoom WebSocket delivery (docs/websocket.md): closed label sets, every value present from start at 0.
# Why a connection attempt failed before Zoom confirmed it:
WEBSOCKET_CONNECT_FAILURES = (
    "token_request",
    "connect",
    "token_refused",
    "build_connection",
    "timeout",
    "closed",
    "too_large",
    "protocol_error",
    "error",
)
# Why an established connection ended (the agent then reconnects):
WEBSOCKET_RECONNECTS = (
    "closed",
    "heartbeat_missed",
    "token_expired",
    "token_refused",
    "too_large",
    "protocol_error",
    "error",
)
WEBSOCKET_MODULES = ("build_connection", "heartbeat", "message", "other", "malformed")
WEBSOCKET_EVENT_OUTCOMES = (
    "accepted",
    "duplicate",
    "unknown_event",
    "malformed",
    "unknown_account",
    "account_mismatch",
    "error",
)


@dataclass(frozen=True, slots=True)
class WebSocketFamilies:
    """The WebSocket source's self-metrics, all labelled by `account`."""

    connected: GaugeFamily
    connects: CounterFamily
    connect_failures: CounterFamily
    reconnects: CounterFamily
    messages: CounterFamily
    events: CounterFamily
    last_message: GaugeFamily


# The REST poller (docs/poller.md): how each instance's poll ended, and how each token request ended.
POLL_OUTCOMES = ("polled", "not_ended", "not_subscribed", "too_old", "gave_up", "failed")
TOKEN_OUTCOMES = ("ok", "unauthorized", "error")


@dataclass(frozen=True, slots=True)
class ApiFamilies:
    """Self-metrics of the REST poller and its Zoom API calls, all labelled by the configured `account`."""

    requests: CounterFamily
    rate_limited: CounterFamily
    token_requests: CounterFamily
    budget_used: GaugeFamily
    budget_limit: GaugeFamily
    polls: CounterFamily
    backlog: GaugeFamily
    oldest_pending_age: GaugeFamily


@dataclass(frozen=True, slots=True)
class _Histograms:
    latency: HistogramFamily
    jitter: HistogramFamily
    loss: HistogramFamily
    bitrate: HistogramFamily


class Catalogue:
    """Creates the families on a store and holds them by role for the pipeline to record into."""

    def __init__(
        self,
        store: Store,
        enrichment: Sequence[str],
        buckets: Mapping[str, Sequence[float]],
        series_ttl: float,
        exponential_scale: int | None = None,
    ) -> None:
        unknown = sorted(set(buckets) - set(DEFAULT_BUCKETS))
        if unknown:
            raise ValueError(f"bucket overrides for unknown histogram families: {', '.join(unknown)}")
        self._store = store
        self._buckets = {**DEFAULT_BUCKETS, **{name: tuple(b) for name, b in buckets.items()}}
        self._ttl = series_ttl
        self._exponential_scale = exponential_scale
        extra = tuple(enrichment)
        stream = (*_STREAM, *extra)

        # Real-time stream: one observation per record, i.e. per participant, media stream and record
        # (a participant-minute at Zoom's one record a minute). Time is in the *_time_seconds_total counters.
        self.media_latency = self._histogram(
            "zoom_qss_media_latency_seconds",
            "One-way media latency, one observation per record (Zoom `latency`).",
            stream,
        )
        self.media_jitter = self._histogram(
            "zoom_qss_media_jitter_seconds", "Media jitter, one observation per record (Zoom `jitter`).", stream
        )
        self.media_loss = self._histogram(
            "zoom_qss_media_packet_loss_ratio",
            "Average packet loss, one observation per record (Zoom `avg_loss`), ratio 0-1.",
            stream,
        )
        self.media_max_loss = self._histogram(
            "zoom_qss_media_max_packet_loss_ratio",
            "Maximum packet loss within each record (Zoom `max_loss`), ratio 0-1.",
            stream,
        )
        self.media_bitrate = self._histogram(
            "zoom_qss_media_bitrate_bytes_per_second",
            "Media bitrate, one observation per record (Zoom `bitrate`, kbps x 125).",
            stream,
        )
        self.media_frame_rate = self._histogram(
            "zoom_qss_media_frames_per_second",
            "Video and screen-share frame rate, one observation per record (Zoom `frame_rate`).",
            stream,
        )
        self.media_height = self._histogram(
            "zoom_qss_media_frame_height_pixels",
            "Video and screen-share resolution height, one observation per record (Zoom `resolution`).",
            stream,
        )
        self.media_records = store.counter(
            "zoom_qss_media_records_total",
            "Real-time records per media stream (entries with a value); participant-minutes only at one a minute.",
            stream,
            ttl=series_ttl,
        )
        self.media_time = store.counter(
            "zoom_qss_media_time_seconds_total",
            "Seconds of media per stream: each record credited with the time since its participant's previous one.",
            stream,
            ttl=series_ttl,
        )
        graded = ("account", "product", "media", *extra)
        self.quality_records = store.counter(
            "zoom_qss_quality_records_total",
            "Records by Zoom's own quality grade (`audio_quality`, `video_quality`, `as_quality`).",
            ("account", "product", "media", "quality", *extra),
            ttl=series_ttl,
        )
        self.quality_time = store.counter(
            "zoom_qss_quality_time_seconds_total",
            "Seconds in each of Zoom's quality grades, credited from record spacing as media time.",
            ("account", "product", "media", "quality", *extra),
            ttl=series_ttl,
        )
        self.quality_score = self._histogram(
            "zoom_qss_quality_score",
            "Zoom's quality score, one observation per record (scale as Zoom reports it, 1-5).",
            graded,
        )
        self.cpu_usage = self._histogram(
            "zoom_qss_cpu_usage_ratio",
            "Client CPU usage, one observation per record; measure is zoom_avg, zoom_max or system_max.",
            ("account", "product", "measure", *extra),
        )
        self.wifi_rssi = self._histogram(
            "zoom_qss_wifi_rssi_dbm",
            "Average Wi-Fi signal strength, one observation per record, dBm.",
            ("account", "product", *extra),
        )
        self.network_notifications = store.counter(
            "zoom_qss_network_notifications_total",
            "Client network warnings (`network bandwidth low`, `internet connection unstable`).",
            ("account", "product", "notification", *extra),
            ttl=series_ttl,
        )

        # Zoom Phone.
        leg = ("account", "leg", "direction")
        self.phone_mos = self._histogram(
            "zoom_qss_phone_mos", "Zoom Phone Mean Opinion Score per sample, 1-5 (Zoom treats < 3.5 as poor).", leg
        )
        self.phone_latency = self._histogram(
            "zoom_qss_phone_latency_seconds", "Zoom Phone network delay per sample (Zoom `network_delay`).", leg
        )
        self.phone_jitter = self._histogram("zoom_qss_phone_jitter_seconds", "Zoom Phone jitter per sample.", leg)
        self.phone_loss = self._histogram(
            "zoom_qss_phone_packet_loss_ratio", "Zoom Phone average packet loss per sample, ratio 0-1.", leg
        )
        self.phone_bitrate = self._histogram(
            "zoom_qss_phone_bitrate_bytes_per_second", "Zoom Phone bitrate per sample (kbps x 125).", leg
        )
        self.phone_calls = store.counter(
            "zoom_qss_phone_calls_total",
            "Zoom Phone calls that ended (`phone.call_qos_summary`).",
            ("account",),
            ttl=series_ttl,
        )

        # Session summaries: one observation per participant session.
        summary = (*_STREAM, "stat", *extra)
        self.participant_sessions = store.counter(
            "zoom_qss_participant_sessions_total",
            "Participant sessions summarised (`*_qos_summary`), counted once whichever source delivered them.",
            ("account", "product", "source", *extra),
            ttl=series_ttl,
        )
        self.summary = _Histograms(
            self._histogram(
                "zoom_qss_participant_session_latency_seconds",
                "Whole-session latency per participant session; stat is avg or max.",
                summary,
            ),
            self._histogram(
                "zoom_qss_participant_session_jitter_seconds",
                "Whole-session jitter per participant session; stat is avg or max.",
                summary,
            ),
            self._histogram(
                "zoom_qss_participant_session_packet_loss_ratio",
                "Whole-session packet loss per participant session, ratio 0-1; stat is avg or max.",
                summary,
            ),
            self._histogram(
                "zoom_qss_participant_session_bitrate_bytes_per_second",
                "Whole-session bitrate per participant session; stat is avg or max.",
                summary,
            ),
        )
        self.summary_quality = store.counter(
            "zoom_qss_participant_session_quality_total",
            "Participant sessions by Zoom's whole-session quality grade.",
            ("account", "product", "media", "quality", *extra),
            ttl=series_ttl,
        )

        # The exporter itself.
        self.webhook_requests = store.counter(
            "zoom_qss_webhook_requests_total", "Webhook requests by outcome.", ("outcome",)
        )
        for outcome in WEBHOOK_OUTCOMES:
            self.webhook_requests.inc((outcome,), 0)
        self.listener_rejections = store.counter(
            "zoom_qss_listener_rejections_total",
            "Requests and connections a listener refused before the application saw them, by reason.",
            ("listener", "reason"),
        )
        for listener in LISTENERS:
            for reason in LISTENER_REJECTIONS:
                self.listener_rejections.inc((listener, reason), 0)
        self.events = store.counter(
            "zoom_qss_events_total",
            "QSS events taken into the pipeline (duplicates excluded), by account, source and event.",
            ("account", "source", "event"),
        )
        self.event_lag = self._histogram(
            "zoom_qss_event_lag_seconds", "Receive time minus the event's event_ts.", ("source",), ttl=None
        )
        # The pipeline creates the closed (field, reason) set at 0 (zoom/events.py PARSE_ERRORS).
        self.parse_errors = store.counter(
            "zoom_qss_parse_errors_total",
            "Values, entries and events refused by the decoder, by field and reason.",
            ("field", "reason"),
        )
        # And the closed field set of this one (zoom/measured.py UNMEASURED_FIELDS).
        self.unmeasured = store.counter(
            "zoom_qss_unmeasured_values_total",
            "Zeros that are no measurement (0 ms latency, 0 kbps bitrate ...), not observed, by Zoom's field.",
            ("field",),
        )
        self.build_info: GaugeFamily = store.gauge(
            "zoom_qss_build_info", "Always 1; the exporter's version.", ("version",)
        )
        self.build_info.set((__version__,), 1)
        self.websocket = WebSocketFamilies(
            store.gauge(
                "zoom_qss_websocket_connected",
                "1 while the account's Zoom WebSocket is connected and confirmed by Zoom, else 0.",
                ("account",),
            ),
            store.counter("zoom_qss_websocket_connects_total", "Zoom WebSocket connections established.", ("account",)),
            store.counter(
                "zoom_qss_websocket_connect_failures_total",
                "Zoom WebSocket connection attempts that failed before Zoom confirmed them, by reason.",
                ("account", "reason"),
            ),
            store.counter(
                "zoom_qss_websocket_reconnects_total",
                "Established Zoom WebSocket connections that ended (the agent reconnects), by reason.",
                ("account", "reason"),
            ),
            store.counter(
                "zoom_qss_websocket_messages_total",
                "Frames received over the Zoom WebSocket, by module (malformed: unreadable, skipped).",
                ("account", "module"),
            ),
            store.counter(
                "zoom_qss_websocket_events_total",
                "Events received in WebSocket message frames, by outcome (as zoom_qss_webhook_requests_total).",
                ("account", "outcome"),
            ),
            store.gauge(
                "zoom_qss_websocket_last_message_timestamp_seconds",
                "Unix time of the last event message received over the account's Zoom WebSocket.",
                ("account",),
            ),
        )

        self.api = ApiFamilies(
            store.counter(
                "zoom_qss_api_requests_total",
                "Zoom REST API requests by templated endpoint and HTTP status (error: no answer).",
                ("account", "endpoint", "code"),
            ),
            store.counter(
                "zoom_qss_api_rate_limited_total",
                "Zoom REST API answers 429, by X-RateLimit-Type (per_second, per_minute, daily, other).",
                ("account", "limit_type"),
            ),
            store.counter(
                "zoom_qss_oauth_token_requests_total",
                "Server-to-Server OAuth token requests of the poller by outcome (ok, unauthorized, error).",
                ("account", "outcome"),
            ),
            store.gauge(
                "zoom_qss_api_daily_budget_used",
                "Heavy + Resource-intensive API calls made today (UTC) against poller.daily_budget.",
                ("account",),
            ),
            store.gauge(
                "zoom_qss_api_daily_budget_limit",
                "The daily budget of Heavy + Resource-intensive API calls (poller.daily_budget).",
                ("account",),
            ),
            store.counter(
                "zoom_qss_poll_instances_total",
                "Meeting, webinar and session instances whose summaries the poller asked for, by outcome.",
                ("account", "product", "outcome"),
            ),
            store.gauge(
                "zoom_qss_poll_backlog",
                "Instances waiting to be polled (pending, whether due yet or not).",
                ("account",),
            ),
            store.gauge(
                "zoom_qss_poll_oldest_pending_age_seconds",
                "How long the longest-waiting due instance has been due (0 when none is due).",
                ("account",),
            ),
        )

    def _histogram(
        self, name: str, documentation: str, labelnames: Sequence[str], ttl: float | None = -1.0
    ) -> HistogramFamily:
        return self._store.histogram(
            name,
            documentation,
            labelnames,
            self._buckets[name],
            ttl=self._ttl if ttl == -1.0 else ttl,
            exponential_scale=self._exponential_scale,
        )

    def add_store_metrics(self) -> None:
        """Series counts and refusals per family (registered last, so they include every family).

        Every family under the cap is listed: the stored ones and the capped computed ones (active
        participants, detail mode). These two are fixed-size and outside the cap themselves.
        """
        store = self._store
        families = [family for family in store.families() if not isinstance(family, CallbackFamily) or family.capped]
        store.callback(
            "zoom_qss_series",
            "Series held per family (computed families: exposed at their last collection).",
            ("family",),
            lambda: [Sample((f.name,), float(len(f))) for f in families],
            capped=False,
        )
        store.callback(
            "zoom_qss_series_dropped_total",
            "Distinct series refused by the hard series cap (limits.max_series), per family.",
            ("family",),
            lambda: [Sample((f.name,), float(f.dropped)) for f in families],
            type="counter",
            capped=False,
        )
