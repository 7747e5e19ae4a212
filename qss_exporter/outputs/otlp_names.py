"""OpenTelemetry names and UCUM units of the metric families, chosen for exact Prometheus name parity.

The standard OTLP -> Prometheus translation (Prometheus's OTLP receiver with its default
`UnderscoreEscapingWithSuffixes`, the Collector's `prometheus` and `prometheusremotewrite`
exporters) turns `zoom.qss.media.latency` with unit `s` into `zoom_qss_media_latency_seconds`:
dots to underscores, a unit suffix (`s` -> `_seconds`, `By/s` -> `_bytes_per_second`), `_total`
on monotonic sums, and `{...}` annotation units dropped. The table below is docs/otlp.md's.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["OTLP_NAMES", "otlp_name"]

# Prometheus family name -> (OpenTelemetry name, UCUM unit).
# Dimensionless values that are not ratios carry a `{...}` annotation, never `1`, so no translator
# can append `_ratio` to them; ratios keep `ratio` as their last word with unit `1`, which every
# translator leaves as it is (Prometheus adds `_ratio` for unit `1` only to gauges, and removes it
# from the words first).
OTLP_NAMES: dict[str, tuple[str, str]] = {
    # Real-time stream
    "zoom_qss_media_latency_seconds": ("zoom.qss.media.latency", "s"),
    "zoom_qss_media_jitter_seconds": ("zoom.qss.media.jitter", "s"),
    "zoom_qss_media_packet_loss_ratio": ("zoom.qss.media.packet_loss_ratio", "1"),
    "zoom_qss_media_max_packet_loss_ratio": ("zoom.qss.media.max_packet_loss_ratio", "1"),
    "zoom_qss_media_bitrate_bytes_per_second": ("zoom.qss.media.bitrate", "By/s"),
    "zoom_qss_media_frames_per_second": ("zoom.qss.media.frames", "{frame}/s"),
    "zoom_qss_media_frame_height_pixels": ("zoom.qss.media.frame_height_pixels", "{pixel}"),
    "zoom_qss_media_records_total": ("zoom.qss.media.records", "{record}"),
    "zoom_qss_quality_records_total": ("zoom.qss.quality.records", "{record}"),
    "zoom_qss_media_time_seconds_total": ("zoom.qss.media.time", "s"),
    "zoom_qss_quality_time_seconds_total": ("zoom.qss.quality.time", "s"),
    "zoom_qss_quality_score": ("zoom.qss.quality.score", "{score}"),
    "zoom_qss_cpu_usage_ratio": ("zoom.qss.cpu.usage_ratio", "1"),
    "zoom_qss_wifi_rssi_dbm": ("zoom.qss.wifi.rssi_dbm", "{dBm}"),
    "zoom_qss_network_notifications_total": ("zoom.qss.network.notifications", "{notification}"),
    "zoom_qss_active_participants": ("zoom.qss.active.participants", "{participant}"),
    "zoom_qss_active_meetings": ("zoom.qss.active.meetings", "{meeting}"),
    # Zoom Phone
    "zoom_qss_phone_mos": ("zoom.qss.phone.mos", "{score}"),
    "zoom_qss_phone_latency_seconds": ("zoom.qss.phone.latency", "s"),
    "zoom_qss_phone_jitter_seconds": ("zoom.qss.phone.jitter", "s"),
    "zoom_qss_phone_packet_loss_ratio": ("zoom.qss.phone.packet_loss_ratio", "1"),
    "zoom_qss_phone_bitrate_bytes_per_second": ("zoom.qss.phone.bitrate", "By/s"),
    "zoom_qss_phone_calls_total": ("zoom.qss.phone.calls", "{call}"),
    "zoom_qss_phone_active_calls": ("zoom.qss.phone.active_calls", "{call}"),
    # Participant sessions
    "zoom_qss_participant_sessions_total": ("zoom.qss.participant.sessions", "{session}"),
    "zoom_qss_participant_session_latency_seconds": ("zoom.qss.participant_session.latency", "s"),
    "zoom_qss_participant_session_jitter_seconds": ("zoom.qss.participant_session.jitter", "s"),
    "zoom_qss_participant_session_packet_loss_ratio": ("zoom.qss.participant_session.packet_loss_ratio", "1"),
    "zoom_qss_participant_session_bitrate_bytes_per_second": ("zoom.qss.participant_session.bitrate", "By/s"),
    "zoom_qss_participant_session_quality_total": ("zoom.qss.participant_session.quality", "{session}"),
    # The exporter itself
    "zoom_qss_webhook_requests_total": ("zoom.qss.webhook.requests", "{request}"),
    "zoom_qss_listener_rejections_total": ("zoom.qss.listener.rejections", "{request}"),
    "zoom_qss_events_total": ("zoom.qss.events", "{event}"),
    "zoom_qss_event_lag_seconds": ("zoom.qss.event.lag", "s"),
    "zoom_qss_parse_errors_total": ("zoom.qss.parse.errors", "{error}"),
    "zoom_qss_unmeasured_values_total": ("zoom.qss.unmeasured.values", "{value}"),
    "zoom_qss_build_info": ("zoom.qss.build.info", ""),
    "zoom_qss_dedupe_keys": ("zoom.qss.dedupe.keys", "{key}"),
    "zoom_qss_dedupe_evicted_total": ("zoom.qss.dedupe.evicted", "{key}"),
    "zoom_qss_enrichment_participants": ("zoom.qss.enrichment.participants", "{participant}"),
    "zoom_qss_series": ("zoom.qss.series", "{series}"),
    "zoom_qss_series_dropped_total": ("zoom.qss.series.dropped", "{series}"),
    "zoom_qss_otlp_exports_total": ("zoom.qss.otlp.exports", "{export}"),
    "zoom_qss_otlp_last_export_duration_seconds": ("zoom.qss.otlp.last_export.duration", "s"),
    "zoom_qss_otlp_last_success_timestamp_seconds": ("zoom.qss.otlp.last_success_timestamp", "s"),
    "zoom_qss_otlp_log_records_dropped_total": ("zoom.qss.otlp.log_records.dropped", "{record}"),
    # Zoom WebSocket delivery
    "zoom_qss_websocket_connected": ("zoom.qss.websocket.connected", ""),
    "zoom_qss_websocket_connects_total": ("zoom.qss.websocket.connects", "{connection}"),
    "zoom_qss_websocket_connect_failures_total": ("zoom.qss.websocket.connect_failures", "{attempt}"),
    "zoom_qss_websocket_reconnects_total": ("zoom.qss.websocket.reconnects", "{reconnect}"),
    "zoom_qss_websocket_messages_total": ("zoom.qss.websocket.messages", "{message}"),
    "zoom_qss_websocket_events_total": ("zoom.qss.websocket.events", "{event}"),
    "zoom_qss_websocket_last_message_timestamp_seconds": ("zoom.qss.websocket.last_message_timestamp", "s"),
    # Zoom REST poller
    "zoom_qss_api_requests_total": ("zoom.qss.api.requests", "{request}"),
    "zoom_qss_api_rate_limited_total": ("zoom.qss.api.rate_limited", "{response}"),
    "zoom_qss_oauth_token_requests_total": ("zoom.qss.oauth.token_requests", "{request}"),
    "zoom_qss_api_daily_budget_used": ("zoom.qss.api.daily_budget.used", "{request}"),
    "zoom_qss_api_daily_budget_limit": ("zoom.qss.api.daily_budget.limit", "{request}"),
    "zoom_qss_poll_instances_total": ("zoom.qss.poll.instances", "{instance}"),
    "zoom_qss_poll_backlog": ("zoom.qss.poll.backlog", "{instance}"),
    "zoom_qss_poll_oldest_pending_age_seconds": ("zoom.qss.poll.oldest_pending_age", "s"),
    # Process and runtime (prometheus_client's collectors): their Prometheus names are the standard, so the
    # OTLP names are chosen to translate back to exactly them, like every other family.
    "process_cpu_seconds_total": ("process.cpu", "s"),
    "process_resident_memory_bytes": ("process.resident_memory", "By"),
    "process_virtual_memory_bytes": ("process.virtual_memory", "By"),
    "process_start_time_seconds": ("process.start_time", "s"),
    "process_open_fds": ("process.open_fds", "{fd}"),
    "process_max_fds": ("process.max_fds", "{fd}"),
    "python_info": ("python.info", ""),
    "python_gc_objects_collected_total": ("python.gc.objects_collected", "{object}"),
    "python_gc_objects_uncollectable_total": ("python.gc.objects_uncollectable", "{object}"),
    "python_gc_collections_total": ("python.gc.collections", "{collection}"),
    # Leadership of pulled sources
    "zoom_qss_leader": ("zoom.qss.leader", ""),
    "zoom_qss_leader_changes_total": ("zoom.qss.leader.changes", "{change}"),
    # Saved pipeline state
    "zoom_qss_state_checkpoints_total": ("zoom.qss.state.checkpoints", "{checkpoint}"),
    "zoom_qss_state_last_checkpoint_timestamp_seconds": ("zoom.qss.state.last_checkpoint_timestamp", "s"),
    "zoom_qss_state_checkpoint_duration_seconds": ("zoom.qss.state.checkpoint_duration", "s"),
    "zoom_qss_state_restore": ("zoom.qss.state.restore", ""),
    # Shared state (Redis)
    "zoom_qss_state_shared_up": ("zoom.qss.state.shared_up", ""),
    "zoom_qss_state_local_decisions_total": ("zoom.qss.state.local_decisions", "{record}"),
    # Configuration reload
    "zoom_qss_config_last_reload_successful": ("zoom.qss.config.last_reload_successful", ""),
    "zoom_qss_config_last_reload_success_timestamp_seconds": ("zoom.qss.config.last_reload_success_timestamp", "s"),
    "zoom_qss_config_reloads_total": ("zoom.qss.config.reloads", "{reload}"),
}

_SUFFIX_UNITS = (("_bytes_per_second", "By/s"), ("_seconds", "s"))


def otlp_name(name: str, kind: Literal["counter", "gauge", "histogram"]) -> tuple[str, str]:
    """The OpenTelemetry (name, unit) of a Prometheus family name.

    Families missing from the table (added after it) get a derived name that translates back the
    same way: `_total` dropped from counters, `_seconds` / `_bytes_per_second` become the unit.
    """
    known = OTLP_NAMES.get(name)
    if known is not None:
        return known
    unit = ""
    if kind == "counter":
        name = name.removesuffix("_total")
    else:
        for suffix, suffix_unit in _SUFFIX_UNITS:
            if name.endswith(suffix):
                name, unit = name.removesuffix(suffix), suffix_unit
                break
        else:
            unit = "1" if name.endswith("_ratio") else ""
    return "zoom.qss." + name.removeprefix("zoom_qss_"), unit
