"""The "Zoom Phone" dashboard: MOS and its share below 3.5, network by call leg and direction, calls."""

from __future__ import annotations

from dashboards import guidance
from dashboards.grafana import (
    JSON,
    Query,
    Row,
    custom_variable,
    dashboard,
    heatmap,
    higher_is_worse,
    lower_is_worse,
    query_variable,
    stat,
    timeseries,
)
from dashboards.promql import ACCOUNT, PHONE, avg_from, labels, quantile

__all__ = ["UID", "build"]

UID = "zoom-qss-phone"
MOS = "zoom_qss_phone_mos"
BY = "leg, direction"
LEGEND = "{{leg}} {{direction}}"
POOR_LE = f'le="{guidance.PHONE_MOS_POOR.value:g}"'
POOR_SHARE_STEPS = [(None, "green"), (guidance.PHONE_MOS_POOR_SHARE, "red")]


def _poor_share(by: str = "") -> str:
    poor = f"rate({MOS}_bucket{labels(PHONE, POOR_LE)}[5m])"
    everything = f"rate({MOS}_count{labels(PHONE)}[5m])"
    if by:
        return f"sum by ({by}) ({poor})\n/\nsum by ({by}) ({everything})"
    return f"sum({poor})\n/\nsum({everything})"


def _now() -> Row:
    return Row(
        "Right now",
        [
            (
                stat(
                    "Active calls",
                    "Zoom Phone calls with a QoS sample in the activity window that have not ended.",
                    "short",
                    Query(f"sum(zoom_qss_phone_active_calls{labels(ACCOUNT)})"),
                ),
                6,
            ),
            (
                stat(
                    "Calls ended, 1 h",
                    "Calls that ended (phone.call_qos_summary) in the last hour.",
                    "short",
                    Query(f"sum(increase(zoom_qss_phone_calls_total{labels(ACCOUNT)}[1h]))"),
                ),
                6,
            ),
            (
                stat(
                    "MOS samples 3.5 or lower",
                    f"Share of MOS samples at or below 3.5 in the last 5 minutes. {guidance.PHONE_MOS_POOR.source}; "
                    f"red from {guidance.PHONE_MOS_POOR_SHARE:.0%}, the alert level.",
                    "percentunit",
                    Query(_poor_share()),
                    steps=POOR_SHARE_STEPS,
                ),
                6,
            ),
            (
                stat(
                    "Median MOS",
                    f"Median Mean Opinion Score of the last 5 minutes (1-5). {guidance.PHONE_MOS_POOR.source}.",
                    "none",
                    Query(quantile(0.5, f"rate({MOS}_bucket{labels(PHONE)}[5m])")),
                    steps=lower_is_worse(guidance.PHONE_MOS_POOR),
                    decimals=2,
                ),
                6,
            ),
        ],
        height=4,
    )


def _mos() -> Row:
    sel = labels(PHONE)
    return Row(
        "Mean Opinion Score",
        [
            (
                heatmap(
                    "MOS distribution",
                    "MOS samples of all call legs; cells: samples per minute in each bucket. "
                    f"{guidance.PHONE_MOS_POOR.source}.",
                    "none",
                    f"60 * sum by (le) (rate({MOS}_bucket{sel}[5m]))",
                ),
                8,
            ),
            (
                timeseries(
                    "MOS 3.5 or lower by leg and direction",
                    f"Share of MOS samples at or below 3.5, 5-minute window. {guidance.PHONE_MOS_POOR.source}; the "
                    f"dashed line is the alert level ({guidance.PHONE_MOS_POOR_SHARE:.0%}).",
                    "percentunit",
                    [Query(_poor_share(BY), LEGEND)],
                    steps=POOR_SHARE_STEPS,
                    max_value=1,
                ),
                8,
            ),
            (
                timeseries(
                    "Worst 5 % MOS by leg and direction",
                    f"5th percentile of MOS, 5-minute window: 95 % of samples are better. "
                    f"{guidance.PHONE_MOS_POOR.source}.",
                    "none",
                    [Query(quantile(0.05, f"rate({MOS}_bucket{sel}[5m])", BY), LEGEND)],
                    steps=lower_is_worse(guidance.PHONE_MOS_POOR),
                    min_value=1,
                    max_value=5,
                ),
                8,
            ),
        ],
    )


def _network() -> Row:
    sel = labels(PHONE)
    loss = "zoom_qss_phone_packet_loss_ratio"
    return Row(
        "Network by call leg and direction",
        [
            (
                timeseries(
                    "p95 latency",
                    f"95th percentile of network delay, 5-minute window. {guidance.LATENCY.source}.",
                    "s",
                    [Query(quantile(0.95, f"rate(zoom_qss_phone_latency_seconds_bucket{sel}[5m])", BY), LEGEND)],
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
            (
                timeseries(
                    "p95 jitter",
                    f"95th percentile of jitter, 5-minute window. {guidance.JITTER.source}.",
                    "s",
                    [Query(quantile(0.95, f"rate(zoom_qss_phone_jitter_seconds_bucket{sel}[5m])", BY), LEGEND)],
                    steps=higher_is_worse(guidance.JITTER),
                ),
                8,
            ),
            (
                timeseries(
                    "Average packet loss",
                    f"Average packet loss, 5-minute window. {guidance.PACKET_LOSS.source}.",
                    "percentunit",
                    [Query(avg_from(f"rate({loss}_sum{sel}[5m])", f"rate({loss}_count{sel}[5m])", BY), LEGEND)],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
        ],
    )


def _calls() -> Row:
    return Row(
        "Calls",
        [
            (
                timeseries(
                    "Active calls",
                    "Zoom Phone calls in progress, per account.",
                    "short",
                    [Query(f"sum by (account) (zoom_qss_phone_active_calls{labels(ACCOUNT)})", "{{account}}")],
                ),
                8,
            ),
            (
                timeseries(
                    "Calls ended per minute",
                    "Calls that ended (phone.call_qos_summary) per minute, per account.",
                    "cpm",
                    [
                        Query(
                            f"60 * sum by (account) (rate(zoom_qss_phone_calls_total{labels(ACCOUNT)}[5m]))",
                            "{{account}}",
                        )
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "Median bitrate",
                    "Median audio bitrate by leg and direction, 5-minute window (a call uses roughly 60-100 kbit/s).",
                    "Bps",
                    [
                        Query(
                            quantile(
                                0.5, f"rate(zoom_qss_phone_bitrate_bytes_per_second_bucket{labels(PHONE)}[5m])", BY
                            ),
                            LEGEND,
                        )
                    ],
                ),
                8,
            ),
        ],
    )


def build() -> JSON:
    variables = [
        query_variable(
            "account", "Account", f"{MOS}_count", description="Configured Zoom account (the `account` label)."
        ),
        custom_variable("leg", "Leg", ["caller", "callee"], description="Which party of the call the sample is about."),
        custom_variable(
            "direction", "Direction", ["sending", "receiving"], description="Media direction of the sample."
        ),
    ]
    return dashboard(
        UID,
        "Zoom Phone",
        "Zoom Phone call quality: MOS, network by leg and direction, calls. Data: qss-exporter.",
        variables,
        [_now(), _mos(), _network(), _calls()],
    )
