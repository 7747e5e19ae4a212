"""The "qss-exporter health" dashboard: webhooks arriving, verified and parsed; lag; cardinality; scrapes;
the REST poller's Zoom API calls, rate limiting and daily budget; the WebSocket source; OTLP export.
"""

from __future__ import annotations

from dashboards.grafana import JSON, Panel, Query, Row, dashboard, query_variable, stat, timeseries
from dashboards.promql import labels, quantile

__all__ = ["UID", "build"]

UID = "zoom-qss-exporter"
TARGET = 'job="$job", instance=~"$instance"'
REQUESTS = "zoom_qss_webhook_requests_total"
REFUSED = 'outcome=~"bad_signature|missing_signature|stale_timestamp"'
SERVER_ERRORS = 'outcome=~"overloaded|error"'
ACCEPTED = 'outcome="accepted"'
WINDOW = "$__rate_interval"


def _status() -> Row:
    sel = labels(TARGET)
    refused = f"sum(rate({REQUESTS}{labels(TARGET, REFUSED)}[5m]))\n/\nsum(rate({REQUESTS}{sel}[5m]))"
    return Row(
        "Status",
        [
            (
                stat(
                    "Targets up",
                    "Scrape targets of the job that answered the last scrape (Prometheus's `up`).",
                    "short",
                    Query(f"sum(up{sel})"),
                    steps=[(None, "red"), (1, "green")],
                ),
                4,
            ),
            (
                stat(
                    "Accepted webhooks",
                    "Webhook requests accepted per second, 5-minute window.",
                    "reqps",
                    Query(f"sum(rate({REQUESTS}{labels(TARGET, ACCEPTED)}[5m]))"),
                ),
                4,
            ),
            (
                stat(
                    "Refused: signature",
                    "Share of webhook requests refused for a bad or missing signature or a stale timestamp, 5-minute "
                    "window; the alert fires above 20 %.",
                    "percentunit",
                    Query(refused),
                    steps=[(None, "green"), (0.2, "red")],
                ),
                4,
            ),
            (
                stat(
                    "p95 event lag",
                    "95th percentile of receive time minus Zoom's event time, 5-minute window. Zoom retries arrive up "
                    "to ~85 minutes late.",
                    "s",
                    Query(quantile(0.95, f"rate(zoom_qss_event_lag_seconds_bucket{sel}[5m])")),
                    steps=[(None, "green"), (300, "orange"), (900, "red")],
                ),
                4,
            ),
            (
                stat(
                    "Series held",
                    "Series the exporter holds across all families (the cap is limits.max_series).",
                    "short",
                    Query(f"sum(zoom_qss_series{sel})"),
                ),
                4,
            ),
            (
                stat(
                    "Version",
                    "qss-exporter versions running (zoom_qss_build_info).",
                    "short",
                    Query(f"count by (version) (zoom_qss_build_info{sel})", "{{version}}"),
                ),
                4,
            ),
        ],
        height=4,
    )


def _webhooks() -> Row:
    sel = labels(TARGET)
    return Row(
        "Webhooks",
        [
            (
                timeseries(
                    "Webhook requests by outcome",
                    "Requests per second by outcome: accepted, duplicate (Zoom retry), refused (signature, timestamp, "
                    "malformed, too large) and 5xx (overloaded, error; Zoom retries those).",
                    "reqps",
                    [Query(f"sum by (outcome) (rate({REQUESTS}{sel}[{WINDOW}]))", "{{outcome}}")],
                    stack="normal",
                ),
                8,
            ),
            (
                timeseries(
                    "Events by type",
                    "Events taken into the pipeline per second (duplicates excluded), by source and event type.",
                    "cps",
                    [
                        Query(
                            f"sum by (source, event) (rate(zoom_qss_events_total{sel}[{WINDOW}]))",
                            "{{event}} ({{source}})",
                        )
                    ],
                    stack="normal",
                ),
                8,
            ),
            (
                timeseries(
                    "Server errors",
                    "Share of webhook requests answered with 5xx (overloaded or internal error); the alert fires "
                    "above 1 % for 10 minutes.",
                    "percentunit",
                    [
                        Query(
                            f"(sum(rate({REQUESTS}{labels(TARGET, SERVER_ERRORS)}[{WINDOW}])) or vector(0))\n/\n"
                            f"sum(rate({REQUESTS}{sel}[{WINDOW}]))",
                            "5xx",
                        )
                    ],
                    steps=[(None, "green"), (0.01, "red")],
                ),
                8,
            ),
        ],
    )


def _pipeline() -> Row:
    sel = labels(TARGET)
    lag = f"rate(zoom_qss_event_lag_seconds_bucket{sel}[5m])"
    return Row(
        "Lag, parsing and state",
        [
            (
                timeseries(
                    "Event lag",
                    "Receive time minus Zoom's event time, by source: median and 95th percentile, 5-minute window.",
                    "s",
                    [
                        Query(quantile(0.5, lag, "source"), "p50 {{source}}"),
                        Query(quantile(0.95, lag, "source"), "p95 {{source}}"),
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "Parse errors by field",
                    "Values (or whole events, by their missing field) dropped as unparsable, per second. A flat 0 "
                    "when nothing has failed yet.",
                    "cps",
                    [
                        Query(
                            f"sum by (field) (rate(zoom_qss_parse_errors_total{sel}[{WINDOW}])) or on () vector(0)",
                            "{{field}}",
                        )
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "State held",
                    "Event keys remembered for deduplication and participants whose enrichment is held; evictions "
                    "mean the dedupe window shrank (pipeline.dedupe_max_entries).",
                    "short",
                    [
                        Query(f"sum(zoom_qss_dedupe_keys{sel})", "dedupe keys"),
                        Query(f"sum(zoom_qss_enrichment_participants{sel})", "enrichment participants"),
                        Query(f"sum(increase(zoom_qss_dedupe_evicted_total{sel}[{WINDOW}]))", "dedupe evictions"),
                    ],
                ),
                8,
            ),
        ],
    )


def _cardinality() -> Row:
    sel = labels(TARGET)
    return Row(
        "Cardinality and scrapes",
        [
            (
                timeseries(
                    "Series by family",
                    "Series held per metric family, the ten largest.",
                    "short",
                    [Query(f"topk(10, sum by (family) (zoom_qss_series{sel}))", "{{family}}")],
                ),
                8,
            ),
            (
                timeseries(
                    "Series refused by the cap",
                    "New series refused per second because limits.max_series was reached, by family.",
                    "cps",
                    [
                        Query(
                            f"sum by (family) (rate(zoom_qss_series_dropped_total{sel}[{WINDOW}])) > 0"
                            " or on () vector(0)",
                            "{{family}}",
                        )
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "Scrape duration",
                    "How long Prometheus takes to scrape /metrics, per instance (Prometheus's own series).",
                    "s",
                    [Query(f"scrape_duration_seconds{sel}", "{{instance}}")],
                ),
                8,
            ),
        ],
    )


def _otlp() -> Row:
    sel = labels(TARGET)
    return Row(
        "OTLP export",
        [
            (
                timeseries(
                    "OTLP exports by outcome",
                    "OTLP export attempts per second by signal (metrics, logs) and outcome; failures are retried "
                    "within otlp.timeout_seconds. A flat 0 while OTLP is off.",
                    "cps",
                    [
                        Query(
                            f"sum by (signal, outcome) (rate(zoom_qss_otlp_exports_total{sel}[{WINDOW}]))"
                            " or on () vector(0)",
                            "{{signal}} {{outcome}}",
                        )
                    ],
                ),
                12,
            ),
            (
                timeseries(
                    "OTLP log records dropped",
                    "QoS log records dropped per second: the queue otlp.logs.max_queue was full, or an export "
                    "failed after its retries. A flat 0 while OTLP logs are off.",
                    "cps",
                    [
                        Query(
                            f"sum(rate(zoom_qss_otlp_log_records_dropped_total{sel}[{WINDOW}])) or on () vector(0)",
                            "dropped",
                        )
                    ],
                ),
                12,
            ),
        ],
    )


def _zoom_api() -> Row:
    sel = labels(TARGET)

    def panel(title: str, description: str, unit: str, expr: str, legend: str) -> tuple[Panel, int]:
        # The poller and the WebSocket source are optional: a flat 0 while they are off.
        return timeseries(title, description, unit, [Query(f"{expr} or on () vector(0)", legend)]), 8

    return Row(
        "Zoom API and WebSocket",
        [
            panel(
                "Zoom API requests",
                "REST calls per second by templated endpoint and HTTP status (`error`: no answer). The poller "
                "spends Zoom's Heavy limit on qos_summary pages; 4xx other than 404 need a look.",
                "reqps",
                f"sum by (endpoint, code) (rate(zoom_qss_api_requests_total{sel}[{WINDOW}]))",
                "{{endpoint}} {{code}}",
            ),
            panel(
                "Rate limited by Zoom",
                "429 answers per second by X-RateLimit-Type (per_second, per_minute, daily). The poller backs "
                "off on each; sustained ones mean other apps on the account share the limit.",
                "reqps",
                f"sum by (account, limit_type) (rate(zoom_qss_api_rate_limited_total{sel}[{WINDOW}]))",
                "{{account}} {{limit_type}}",
            ),
            panel(
                "Daily API budget used",
                "Share of poller.daily_budget spent today (UTC), per account; Heavy and Resource-intensive calls "
                "share Zoom's daily cap. The alert fires above 90 %.",
                "percentunit",
                f"max by (account) (zoom_qss_api_daily_budget_used{sel} / zoom_qss_api_daily_budget_limit{sel})",
                "{{account}}",
            ),
            panel(
                "Poll backlog",
                "Meeting, webinar and session instances waiting for their QoS summaries to be polled.",
                "short",
                f"sum by (account) (zoom_qss_poll_backlog{sel})",
                "{{account}}",
            ),
            panel(
                "WebSocket connected",
                "1 while the account's Zoom WebSocket is open and confirmed (build_connection), 0 while it reconnects.",
                "short",
                f"max by (account) (zoom_qss_websocket_connected{sel})",
                "{{account}}",
            ),
            panel(
                "WebSocket reconnects",
                "Established WebSocket connections that ended, per second, by reason (closed, heartbeat_missed, "
                "token_expired ...); the source reconnects with backoff.",
                "cps",
                f"sum by (account, reason) (rate(zoom_qss_websocket_reconnects_total{sel}[{WINDOW}]))",
                "{{account}} {{reason}}",
            ),
        ],
    )


def build() -> JSON:
    job = query_variable(
        "job", "Job", "zoom_qss_build_info", description="Prometheus job scraping qss-exporter.", multi=False
    )
    instance = query_variable(
        "instance", "Instance", 'zoom_qss_build_info{job="$job"}', description="One or more exporter instances."
    )
    return dashboard(
        UID,
        "qss-exporter health",
        "Is the exporter healthy: webhooks arriving, verified and parsed, lag, cardinality. Data: qss-exporter.",
        [job, instance],
        [_status(), _webhooks(), _pipeline(), _cardinality(), _zoom_api(), _otlp()],
    )
