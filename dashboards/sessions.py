"""The "Meetings, webinars & Video SDK sessions" dashboard: activity, whole-session quality (summaries) and
the drill-down of detail mode (per meeting and per participant; empty unless the exporter turns it on).
"""

from __future__ import annotations

from dashboards import guidance
from dashboards.grafana import JSON, Query, Row, dashboard, heatmap, higher_is_worse, timeseries
from dashboards.overview import POOR, quality_variables
from dashboards.promql import ACCOUNT_PRODUCT, QOS, avg_from, labels, quantile, ratio

__all__ = ["UID", "build"]

UID = "zoom-qss-sessions"
SESSION = "zoom_qss_participant_session"
WINDOW = "1h"  # summaries arrive once per participant session: a long window keeps the curves readable
BY = "product, media"
LEGEND = "{{product}} {{media}}"


def _activity() -> Row:
    return Row(
        "Activity",
        [
            (
                timeseries(
                    "Active participants by product",
                    "People with a QoS record in the activity window and no leave since.",
                    "short",
                    [Query(f"sum by (product) (zoom_qss_active_participants{labels(QOS)})", "{{product}}")],
                    stack="normal",
                ),
                8,
            ),
            (
                timeseries(
                    "Active meetings by product",
                    "Meetings, webinars and Video SDK sessions with at least one active participant (no site filter).",
                    "short",
                    [Query(f"sum by (product) (zoom_qss_active_meetings{labels(ACCOUNT_PRODUCT)})", "{{product}}")],
                    stack="normal",
                ),
                8,
            ),
            (
                timeseries(
                    "Participant sessions ended",
                    "Participant sessions summarised per minute (one per participant and meeting, counted once "
                    "however it arrived), by product and source. No site filter.",
                    "cpm",
                    [
                        Query(
                            f"60 * sum by (product, source) (rate({SESSION}s_total{labels(ACCOUNT_PRODUCT)}[5m]))",
                            "{{product}} ({{source}})",
                        )
                    ],
                    stack="normal",
                ),
                8,
            ),
        ],
    )


def _summaries() -> Row:
    avg = labels(QOS, 'stat="avg"')
    high = labels(QOS, 'stat="max"')
    rate = f"rate({SESSION}_latency_seconds_bucket{avg}[{WINDOW}])"
    grades = f"rate({SESSION}_quality_total{labels(QOS)}[{WINDOW}])"
    poor = f"rate({SESSION}_quality_total{labels(QOS, POOR)}[{WINDOW}])"
    loss = avg_from(
        f"rate({SESSION}_packet_loss_ratio_sum{avg}[{WINDOW}])",
        f"rate({SESSION}_packet_loss_ratio_count{avg}[{WINDOW}])",
        BY,
    )
    return Row(
        "Whole-session quality (participant session summaries)",
        [
            (
                heatmap(
                    "Session average latency",
                    "Each participant session's average latency, as Zoom summarised it at the end; cells: sessions "
                    "per bucket in each interval.",
                    "s",
                    f"sum by (le) (increase({SESSION}_latency_seconds_bucket{avg}[$__rate_interval]))",
                ),
                8,
            ),
            (
                timeseries(
                    "p95 session average latency",
                    f"95th percentile of whole-session average latency, sessions of the last hour. "
                    f"{guidance.LATENCY.source}.",
                    "s",
                    [Query(quantile(0.95, rate, BY), LEGEND)],
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
            (
                timeseries(
                    "p95 session peak jitter",
                    f"95th percentile of each session's maximum jitter, sessions of the last hour. "
                    f"{guidance.JITTER.source}.",
                    "s",
                    [Query(quantile(0.95, f"rate({SESSION}_jitter_seconds_bucket{high}[{WINDOW}])", BY), LEGEND)],
                    steps=higher_is_worse(guidance.JITTER),
                ),
                8,
            ),
            (
                timeseries(
                    "Session average packet loss",
                    f"Mean of whole-session average packet loss, sessions of the last hour. "
                    f"{guidance.PACKET_LOSS.source}.",
                    "percentunit",
                    [Query(loss, LEGEND)],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
            (
                timeseries(
                    "Sessions graded poor or bad",
                    "Share of participant sessions Zoom graded poor or bad over the whole session, last hour.",
                    "percentunit",
                    [Query(ratio(poor, grades, BY), LEGEND)],
                    steps=[(None, "green"), (1 - guidance.QUALITY_SLO, "red")],
                ),
                8,
            ),
            (
                timeseries(
                    "Median session bitrate",
                    "Median of whole-session average bitrate, sessions of the last hour.",
                    "Bps",
                    [
                        Query(
                            quantile(0.5, f"rate({SESSION}_bitrate_bytes_per_second_bucket{avg}[{WINDOW}])", BY),
                            LEGEND,
                        )
                    ],
                ),
                8,
            ),
        ],
    )


def _media() -> Row:
    video = labels(QOS, 'media="video"')
    return Row(
        "Video and quality score during meetings",
        [
            (
                timeseries(
                    "Median video frame rate",
                    "Median frame rate of video streams, 5-minute window.",
                    "suffix: fps",
                    [
                        Query(
                            quantile(
                                0.5, f"rate(zoom_qss_media_frames_per_second_bucket{video}[5m])", "product, direction"
                            ),
                            "{{product}} {{direction}}",
                        )
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "Median video resolution",
                    "Median height of video streams in pixels (720 = 1280*720), 5-minute window.",
                    "suffix: p",
                    [
                        Query(
                            quantile(
                                0.5, f"rate(zoom_qss_media_frame_height_pixels_bucket{video}[5m])", "product, direction"
                            ),
                            "{{product}} {{direction}}",
                        )
                    ],
                ),
                8,
            ),
            (
                heatmap(
                    "Zoom quality score distribution",
                    "Zoom's per-minute quality score (MOS-based, 1 to 5) of all media; cells: participant-streams per "
                    "minute in each bucket.",
                    "none",
                    f"60 * sum by (le) (rate(zoom_qss_quality_score_bucket{labels(QOS)}[5m]))",
                ),
                8,
            ),
        ],
    )


def _drill_down() -> Row:
    """Detail mode's families (docs/detail.md): the selected meetings and participants, by hashed label."""
    scope = labels(ACCOUNT_PRODUCT)
    audio = labels(ACCOUNT_PRODUCT, 'media="audio"')
    who = "account, product, meeting, participant"
    person = "{{meeting}} / {{participant}}"
    needs = " Detail mode only (docs/detail.md): `qss-exporter lookup` turns an email or meeting number into its label."
    return Row(
        "Drill-down: selected meetings and participants (detail mode)",
        [
            (
                timeseries(
                    "Worst participants: audio packet loss",
                    "The ten selected participants (allowlist and worst N) with the highest audio packet loss in "
                    f"their latest one-minute record, either direction. {guidance.PACKET_LOSS.source}.{needs}",
                    "percentunit",
                    [Query(f"topk(10, max by ({who}) (zoom_qss_participant_packet_loss_ratio{audio}))", person)],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
            (
                timeseries(
                    "Worst participants: audio latency",
                    f"The ten selected participants with the highest audio latency in their latest record. "
                    f"{guidance.LATENCY.source}.{needs}",
                    "s",
                    [Query(f"topk(10, max by ({who}) (zoom_qss_participant_latency_seconds{audio}))", person)],
                    steps=higher_is_worse(guidance.LATENCY),
                ),
                8,
            ),
            (
                timeseries(
                    "Selected participants: Zoom quality grade",
                    f"Each selected participant's worst current grade over media: 4 good, 3 fair, 2 poor, 1 bad."
                    f"{needs}",
                    "none",
                    [Query(f"min by ({who}) (zoom_qss_participant_quality_grade{scope})", person)],
                    steps=[(None, "red"), (2.5, "orange"), (3.5, "green")],
                    min_value=1,
                    max_value=4,
                ),
                8,
            ),
            (
                timeseries(
                    "Selected meetings: participants now",
                    f"Active participants of each selected (worst N) meeting, webinar or session.{needs}",
                    "short",
                    [
                        Query(
                            f"sum by (account, product, meeting) (zoom_qss_meeting_participants{scope})", "{{meeting}}"
                        )
                    ],
                ),
                8,
            ),
            (
                timeseries(
                    "Selected meetings: audio packet loss",
                    "Mean audio packet loss over each selected meeting's participants' latest records. "
                    f"{guidance.PACKET_LOSS.source}.{needs}",
                    "percentunit",
                    [
                        Query(
                            f"max by (account, product, meeting) (zoom_qss_meeting_packet_loss_ratio{audio})",
                            "{{meeting}}",
                        )
                    ],
                    steps=higher_is_worse(guidance.PACKET_LOSS),
                ),
                8,
            ),
            (
                timeseries(
                    "Detail series and refusals",
                    "Series detail mode exposes (held under detail.max_series) and those the cap refused per "
                    f"minute; refusals mean the cap is too low for the selection.{needs}",
                    "short",
                    [
                        Query("sum(zoom_qss_detail_series)", "exposed"),
                        Query("60 * sum(rate(zoom_qss_detail_series_refused_total[5m]))", "refused per minute"),
                    ],
                ),
                8,
            ),
        ],
    )


def build() -> JSON:
    return dashboard(
        UID,
        "Zoom meetings, webinars & Video SDK sessions",
        "Activity and whole-session quality of meetings, webinars and Video SDK sessions. Data: qss-exporter.",
        quality_variables(),
        [_activity(), _summaries(), _media(), _drill_down()],
    )
