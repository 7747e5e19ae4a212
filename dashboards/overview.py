"""The "Zoom quality overview" dashboard: is Zoom good right now, which product and media hurt, where."""

from __future__ import annotations

from dashboards import guidance
from dashboards import rules as r
from dashboards.grafana import (
    JSON,
    Column,
    Query,
    Row,
    Variable,
    bargauge,
    dashboard,
    heatmap,
    higher_is_worse,
    query_variable,
    stat,
    table,
    timeseries,
)
from dashboards.promql import ACCOUNT, ACCOUNT_PRODUCT, QOS, avg_from, labels, quantile, ratio

__all__ = ["UID", "build", "quality_variables"]

UID = "zoom-qss-overview"
GRADES = "zoom_qss_quality_time_seconds_total"  # time, not records: the same whatever Zoom's cadence
AUDIO = 'media="audio"'
POOR = 'quality=~"poor|bad"'
BUDGET = 1 - guidance.QUALITY_SLO
GRADE_STEPS = [(None, "green"), (BUDGET, "orange"), (14.4 * BUDGET, "red")]


def quality_variables() -> list[Variable]:
    """account, product and site, read from the time-in-grade counter (present whenever QoS data is)."""
    return [
        query_variable("account", "Account", GRADES, description="Configured Zoom account (the `account` label)."),
        query_variable(
            "product",
            "Product",
            f'{GRADES}{{account=~"$account"}}',
            description="meeting, webinar or session (Video SDK).",
        ),
        query_variable(
            "site",
            "Site",
            f'{GRADES}{{account=~"$account", product=~"$product"}}',
            description="Office from the exporter's CIDR map; unknown when unmatched.",
        ),
    ]


def _now() -> Row:
    audio = labels(QOS, AUDIO)
    poor_1h = ratio(f"rate({GRADES}{labels(QOS, AUDIO, POOR)}[1h])", f"rate({GRADES}{audio}[1h])")
    return Row(
        "Right now",
        [
            (
                stat(
                    "Active participants",
                    "People in meetings, webinars and Video SDK sessions with a QoS record in the activity window.",
                    "short",
                    Query(f"sum(zoom_qss_active_participants{labels(QOS)})"),
                ),
                3,
            ),
            (
                stat(
                    "Active meetings",
                    "Meetings, webinars and Video SDK sessions with at least one active participant (no site filter).",
                    "short",
                    Query(f"sum(zoom_qss_active_meetings{labels(ACCOUNT_PRODUCT)})"),
                ),
                3,
            ),
            (
                stat(
                    "Active phone calls",
                    "Zoom Phone calls with a QoS sample in the activity window that have not ended.",
                    "short",
                    Query(f"sum(zoom_qss_phone_active_calls{labels(ACCOUNT)})"),
                ),
                3,
            ),
            (
                stat(
                    "Poor audio time, 1 h",
                    "Share of graded audio participant time Zoom graded poor or bad in the last hour. Orange: above "
                    f"the {guidance.QUALITY_SLO:.0%} SLO's budget; red: the fast-burn alert level.",
                    "percentunit",
                    Query(poor_1h),
                    steps=GRADE_STEPS,
                ),
                3,
            ),
            (
                stat(
                    "p95 audio latency",
                    f"95th percentile of audio latency over 5 minutes. {guidance.LATENCY.source}.",
                    "s",
                    Query(quantile(0.95, f"{r.LATENCY_BUCKETS}{audio}")),
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                3,
            ),
            (
                stat(
                    "p95 audio jitter",
                    f"95th percentile of audio jitter over 5 minutes. {guidance.JITTER.source}.",
                    "s",
                    Query(quantile(0.95, f"{r.JITTER_BUCKETS}{audio}")),
                    steps=higher_is_worse(guidance.JITTER),
                ),
                3,
            ),
            (
                stat(
                    "Audio packet loss",
                    f"Average packet loss of audio streams over 5 minutes. {guidance.PACKET_LOSS.source}.",
                    "percentunit",
                    Query(avg_from(f"{r.LOSS_SUM}{audio}", f"{r.LOSS_COUNT}{audio}")),
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                    decimals=2,
                ),
                3,
            ),
            (
                stat(
                    "Zoom alerts firing",
                    "Alerts of the bundled Zoom quality rules firing now (site, data centre, phone, SLO burn).",
                    "short",
                    Query('count(ALERTS{alertstate="firing", alertname=~"Zoom.*"}) or vector(0)'),
                    steps=[(None, "green"), (1, "red")],
                ),
                3,
            ),
        ],
        height=4,
    )


def _slo() -> Row:
    audio, poor = labels(QOS, AUDIO), labels(QOS, AUDIO, POOR)
    by_product = f"{r.slo_ratio('1h')}{labels(ACCOUNT_PRODUCT)}"
    return Row(
        f"SLO: {guidance.QUALITY_SLO:.0%} of audio participant time good or fair",
        [
            (
                timeseries(
                    "Poor or bad audio time by product, 1 h window",
                    "Recorded SLO ratio per account and product (not filtered by site). The dashed line is the "
                    "error budget; the page-level alert fires at 14.4 times it.",
                    "percentunit",
                    [Query(by_product, "{{account}} {{product}}")],
                    steps=[(None, "green"), (BUDGET, "red")],
                ),
                12,
            ),
            (
                stat(
                    "Worst burn rate, 1 h",
                    "How fast the worst account and product spends its error budget: 1 = exactly on budget, "
                    "6 and 14.4 are the slow- and fast-burn alert levels.",
                    "suffix:x",
                    Query(f"max({by_product}) / {BUDGET:g}"),
                    steps=[(None, "green"), (1, "orange"), (14.4, "red")],
                    decimals=1,
                ),
                4,
            ),
            (
                stat(
                    "Poor audio time, 7 days",
                    "Audio participant time graded poor or bad in the last 7 days (summed over participants).",
                    "s",
                    Query(f"sum(increase({GRADES}{poor}[7d])) or vector(0)", instant=True),
                ),
                4,
            ),
            (
                stat(
                    "Poor audio share, 7 days",
                    "Share of graded audio participant time that was poor or bad in the last 7 days, against the SLO.",
                    "percentunit",
                    Query(ratio(f"increase({GRADES}{poor}[7d])", f"increase({GRADES}{audio}[7d])"), instant=True),
                    steps=GRADE_STEPS,
                    decimals=2,
                ),
                4,
            ),
        ],
        height=7,
    )


def _by_product_media() -> Row:
    sel = labels(QOS)
    return Row(
        "Latency, jitter and packet loss by product and media",
        [
            (
                timeseries(
                    "p95 latency",
                    f"95th percentile of one-way media latency, 5-minute window. {guidance.LATENCY.source}.",
                    "s",
                    [Query(quantile(0.95, f"{r.LATENCY_BUCKETS}{sel}", "product, media"), "{{product}} {{media}}")],
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
            (
                timeseries(
                    "p95 jitter",
                    f"95th percentile of media jitter, 5-minute window. {guidance.JITTER.source}.",
                    "s",
                    [Query(quantile(0.95, f"{r.JITTER_BUCKETS}{sel}", "product, media"), "{{product}} {{media}}")],
                    steps=higher_is_worse(guidance.JITTER),
                ),
                8,
            ),
            (
                timeseries(
                    "Average packet loss",
                    f"Mean of the per-minute average packet loss, 5-minute window. {guidance.PACKET_LOSS.source}.",
                    "percentunit",
                    [
                        Query(
                            avg_from(f"{r.LOSS_SUM}{sel}", f"{r.LOSS_COUNT}{sel}", "product, media"),
                            "{{product}} {{media}}",
                        )
                    ],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
        ],
    )


def _distributions() -> Row:
    sel = labels(QOS)
    per_minute = (
        "Cells: records per minute in each bucket (one per participant, stream and record; all products and media)."
    )
    return Row(
        "Distributions",
        [
            (
                heatmap(
                    "Latency distribution",
                    f"One-way latency. {per_minute}",
                    "s",
                    f"60 * sum by (le) ({r.LATENCY_BUCKETS}{sel})",
                ),
                8,
            ),
            (
                heatmap(
                    "Jitter distribution", f"Jitter. {per_minute}", "s", f"60 * sum by (le) ({r.JITTER_BUCKETS}{sel})"
                ),
                8,
            ),
            (
                heatmap(
                    "Packet loss distribution",
                    f"Average packet loss per minute. {per_minute}",
                    "percentunit",
                    f"60 * sum by (le) ({r.LOSS_BUCKETS}{sel})",
                ),
                8,
            ),
        ],
    )


def _grades() -> Row:
    sel = labels(QOS)
    share = f"sum by (quality) ({r.QUALITY_RATE}{sel})\n/ ignoring (quality) group_left\nsum({r.QUALITY_RATE}{sel})"
    poor = ratio(f"{r.QUALITY_RATE}{labels(QOS, POOR)}", f"{r.QUALITY_RATE}{sel}", "product, media")
    return Row(
        "Quality grades",
        [
            (
                timeseries(
                    "Participant time by Zoom's grade",
                    "Share of participant time (audio, video and screen share grades) in each of Zoom's grades, "
                    "5-minute window.",
                    "percentunit",
                    [Query(share, "{{quality}}")],
                    stack="normal",
                    max_value=1,
                    colors={"good": "green", "fair": "yellow", "poor": "orange", "bad": "red"},
                ),
                12,
            ),
            (
                bargauge(
                    "Poor or bad share by product and media, now",
                    "Share of graded participant time that was poor or bad in the last 5 minutes, worst first. Orange: "
                    "above the SLO's budget.",
                    "percentunit",
                    Query(f"sort_desc(\n{poor}\n)", "{{product}} {{media}}", instant=True),
                    steps=GRADE_STEPS,
                ),
                12,
            ),
        ],
    )


def _where() -> Row:
    sel = labels(QOS)
    link = (
        "Open ${__data.fields.site} in Network & location",
        "/d/zoom-qss-network?${__url_time_range}&${datasource:queryparam}&var-site=${__data.fields.site}",
    )
    columns = [
        Column(
            ratio(f"{r.QUALITY_RATE}{labels(QOS, POOR)}", f"{r.QUALITY_RATE}{sel}", "site"),
            "Poor or bad",
            "percentunit",
            GRADE_STEPS,
        ),
        Column(
            quantile(0.95, f"{r.LATENCY_BUCKETS}{sel}", "site"), "p95 latency", "s", higher_is_worse(guidance.LATENCY)
        ),
        Column(quantile(0.95, f"{r.JITTER_BUCKETS}{sel}", "site"), "p95 jitter", "s", higher_is_worse(guidance.JITTER)),
        Column(
            avg_from(f"{r.LOSS_SUM}{sel}", f"{r.LOSS_COUNT}{sel}", "site"),
            "Packet loss",
            "percentunit",
            higher_is_worse(guidance.PACKET_LOSS),
        ),
        Column(f"sum by (site) (zoom_qss_active_participants{sel})", "Participants", "short"),
    ]
    dc_latency = quantile(0.95, f"rate(zoom_qss_media_latency_seconds_bucket{sel}[5m])", "data_center")
    return Row(
        "Where it hurts right now",
        [
            (
                table(
                    "Worst sites",
                    "Per site over the last 5 minutes, worst share of poor time first; colours follow Zoom's "
                    "guidance. Click a site to open it in Network & location.",
                    columns,
                    join="site",
                    links=[link],
                ),
                16,
            ),
            (
                bargauge(
                    "Slowest Zoom data centres",
                    f"95th percentile of latency by the Zoom data centre participants connect to, last 5 minutes. "
                    f"{guidance.LATENCY.source}.",
                    "s",
                    Query(f"sort_desc(topk(10,\n{dc_latency}\n))", "{{data_center}}", instant=True),
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
        ],
        height=9,
    )


def build() -> JSON:
    return dashboard(
        UID,
        "Zoom quality overview",
        "Is Zoom good right now across the company, which product and media hurt, and where. Data: qss-exporter.",
        quality_variables(),
        [_now(), _slo(), _by_product_media(), _distributions(), _grades(), _where()],
    )
