"""The "Network & location" dashboard: which office, network type, Zoom data centre or client is the problem."""

from __future__ import annotations

from dashboards import guidance
from dashboards import rules as r
from dashboards.grafana import JSON, Panel, Query, Row, custom_variable, dashboard, heatmap, higher_is_worse, timeseries
from dashboards.overview import GRADE_STEPS, POOR, quality_variables
from dashboards.promql import QOS, avg_from, labels, quantile, ratio

__all__ = ["UID", "build"]

UID = "zoom-qss-network"
MEDIA = 'media=~"$media"'
LATENCY = "zoom_qss_media_latency_seconds"
LOSS = "zoom_qss_media_packet_loss_ratio"
GRADES = "zoom_qss_quality_time_seconds_total"


def _latency(by: str, legend: str) -> Panel:
    sel = labels(QOS, MEDIA)
    return timeseries(
        f"p95 latency by {legend}",
        f"95th percentile of one-way latency by {legend}, 5-minute window. {guidance.LATENCY.source}.",
        "s",
        [Query(quantile(0.95, f"rate({LATENCY}_bucket{sel}[5m])", by), f"{{{{{by}}}}}")],
        steps=higher_is_worse(guidance.LATENCY),
    )


def _loss(by: str, legend: str) -> Panel:
    sel = labels(QOS, MEDIA)
    expr = avg_from(f"rate({LOSS}_sum{sel}[5m])", f"rate({LOSS}_count{sel}[5m])", by)
    return timeseries(
        f"Packet loss by {legend}",
        f"Average packet loss by {legend}, 5-minute window. {guidance.PACKET_LOSS.source}.",
        "percentunit",
        [Query(expr, f"{{{{{by}}}}}")],
        steps=higher_is_worse(guidance.PACKET_LOSS),
    )


def _poor(by: str, legend: str) -> Panel:
    sel = labels(QOS, MEDIA)
    expr = ratio(f"rate({GRADES}{labels(QOS, MEDIA, POOR)}[5m])", f"rate({GRADES}{sel}[5m])", by)
    return timeseries(
        f"Poor or bad time by {legend}",
        f"Share of graded participant time Zoom graded poor or bad, by {legend}, 5-minute window. Dashed: the SLO's "
        "error budget.",
        "percentunit",
        [Query(expr, f"{{{{{by}}}}}")],
        steps=GRADE_STEPS[:2],
    )


def _sites() -> Row:
    sel = labels(QOS, MEDIA)
    return Row(
        "By site",
        [
            (
                timeseries(
                    "p95 latency by site",
                    f"95th percentile of one-way latency per office, 5-minute window. {guidance.LATENCY.source}.",
                    "s",
                    [Query(quantile(0.95, f"{r.LATENCY_BUCKETS}{sel}", "site"), "{{site}}")],
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
            (
                timeseries(
                    "p95 jitter by site",
                    f"95th percentile of jitter per office, 5-minute window. {guidance.JITTER.source}.",
                    "s",
                    [Query(quantile(0.95, f"{r.JITTER_BUCKETS}{sel}", "site"), "{{site}}")],
                    steps=higher_is_worse(guidance.JITTER),
                ),
                8,
            ),
            (
                timeseries(
                    "Packet loss by site",
                    f"Average packet loss per office, 5-minute window. {guidance.PACKET_LOSS.source}.",
                    "percentunit",
                    [Query(avg_from(f"{r.LOSS_SUM}{sel}", f"{r.LOSS_COUNT}{sel}", "site"), "{{site}}")],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
            (
                timeseries(
                    "Poor or bad time by site",
                    "Share of graded participant time Zoom graded poor or bad per office, 5-minute window. Dashed: the "
                    "SLO's error budget.",
                    "percentunit",
                    [
                        Query(
                            ratio(f"{r.QUALITY_RATE}{labels(QOS, MEDIA, POOR)}", f"{r.QUALITY_RATE}{sel}", "site"),
                            "{{site}}",
                        )
                    ],
                    steps=GRADE_STEPS[:2],
                ),
                12,
            ),
            (
                timeseries(
                    "Active participants by site",
                    "People in meetings, webinars and sessions per office (not filtered by media).",
                    "short",
                    [Query(f"sum by (site) (zoom_qss_active_participants{labels(QOS)})", "{{site}}")],
                    stack="normal",
                ),
                12,
            ),
        ],
    )


def _network_types() -> Row:
    return Row(
        "By network type",
        [
            (_latency("network_type", "network type"), 8),
            (_loss("network_type", "network type"), 8),
            (_poor("network_type", "network type"), 8),
        ],
    )


def _data_centres() -> Row:
    return Row(
        "By Zoom data centre",
        [
            (_latency("data_center", "data centre"), 8),
            (_loss("data_center", "data centre"), 8),
            (
                timeseries(
                    "Active participants by data centre",
                    "People connected through each Zoom data centre.",
                    "short",
                    [Query(f"sum by (data_center) (zoom_qss_active_participants{labels(QOS)})", "{{data_center}}")],
                    stack="normal",
                ),
                8,
            ),
        ],
    )


def _clients() -> Row:
    cpu = labels(QOS, 'measure="system_max"')
    return Row(
        "By client version and operating system",
        [
            (_poor("client_version", "client version"), 8),
            (_latency("client_os", "operating system"), 8),
            (
                timeseries(
                    "p95 system CPU by client version",
                    f"95th percentile of the whole machine's peak CPU while in Zoom, 5-minute window. "
                    f"{guidance.CPU_HIGH.source}.",
                    "percentunit",
                    [
                        Query(
                            quantile(0.95, f"rate(zoom_qss_cpu_usage_ratio_bucket{cpu}[5m])", "client_version"),
                            "{{client_version}}",
                        )
                    ],
                    steps=higher_is_worse(guidance.CPU_HIGH),
                    max_value=1,
                ),
                8,
            ),
        ],
    )


def _wifi() -> Row:
    sel = labels(QOS)
    # OpenMetrics exposes only the buckets of the RSSI histogram, so the total is the +Inf bucket.
    # The bucket bound is -67 or -67.0 depending on the Prometheus version (3.x normalises `le`).
    weak_le, all_le = f'le=~"{guidance.RSSI_WEAK.value:g}(.0)?"', 'le="+Inf"'
    weak = f"rate(zoom_qss_wifi_rssi_dbm_bucket{labels(QOS, weak_le)}[5m])"
    total = f"rate(zoom_qss_wifi_rssi_dbm_bucket{labels(QOS, all_le)}[5m])"
    warnings = f"60 * sum by (notification, site) (rate(zoom_qss_network_notifications_total{sel}[5m]))"
    return Row(
        "Wi-Fi and client warnings",
        [
            (
                heatmap(
                    "Wi-Fi signal (RSSI) distribution",
                    "Average Wi-Fi RSSI, one observation per record; cells: Wi-Fi records per minute in each bucket. "
                    f"{guidance.RSSI_WEAK.source}.",
                    "suffix: dBm",
                    f"60 * sum by (le) (rate(zoom_qss_wifi_rssi_dbm_bucket{sel}[5m]))",
                ),
                8,
            ),
            (
                timeseries(
                    "Weak Wi-Fi share by site",
                    f"Share of Wi-Fi records (one per participant and record) with an average RSSI of -67 dBm or "
                    "weaker, by site. "
                    f"{guidance.RSSI_WEAK.source}.",
                    "percentunit",
                    [Query(f"sum by (site) ({weak})\n/\nsum by (site) ({total})", "{{site}}")],
                    max_value=1,
                ),
                8,
            ),
            (
                timeseries(
                    "Client network warnings",
                    "Warnings the Zoom client showed (bandwidth low, connection unstable) per minute, by kind "
                    "and site.",
                    "cpm",
                    [Query(warnings, "{{notification}} {{site}}")],
                ),
                8,
            ),
        ],
    )


def build() -> JSON:
    media = custom_variable("media", "Media", ["audio", "video", "share"], description="Zoom media stream type.")
    return dashboard(
        UID,
        "Zoom network & location",
        "Which office, network type, Zoom data centre, client version or Wi-Fi is the problem. Data: qss-exporter.",
        [*quality_variables(), media],
        [_sites(), _network_types(), _data_centres(), _clients(), _wifi()],
    )
