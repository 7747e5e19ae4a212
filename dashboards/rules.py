"""Prometheus recording and alerting rules for qss-exporter, rendered to dashboards/rules/*.rules.yaml.

Recording rules pre-aggregate what the dashboards and alerts read most (per-site histograms, quality
grades, SLO ratios over several windows); alerts read the recordings, so both agree by construction.
Thresholds come from :mod:`dashboards.guidance`; every alert links to its section of docs/runbook.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from dashboards import guidance

__all__ = [
    "DC_P95_LATENCY",
    "JITTER_BUCKETS",
    "JOB",
    "LATENCY_BUCKETS",
    "LOSS_BUCKETS",
    "LOSS_COUNT",
    "LOSS_SUM",
    "PHONE_MOS_POOR_RATIO",
    "QUALITY_RATE",
    "RUNBOOK",
    "SITE_AVG_LOSS",
    "SITE_P95_LATENCY",
    "SITE_TIME",
    "Alert",
    "Group",
    "Recording",
    "alert_groups",
    "recording_groups",
    "render",
    "slo_ratio",
]

JOB = "qss-exporter"  # the scrape job name the exporter-health rules select (`up{job=...}`)
RUNBOOK = "docs/runbook.md"  # runbook_url = RUNBOOK#<alert name, lower case>; see docs/runbook.md

_MEDIA = "account_product_media_site:zoom_qss_media"
LATENCY_BUCKETS = f"{_MEDIA}_latency_seconds_bucket:rate5m"
JITTER_BUCKETS = f"{_MEDIA}_jitter_seconds_bucket:rate5m"
LOSS_BUCKETS = f"{_MEDIA}_packet_loss_ratio_bucket:rate5m"
LOSS_SUM = f"{_MEDIA}_packet_loss_ratio_sum:rate5m"
LOSS_COUNT = f"{_MEDIA}_packet_loss_ratio_count:rate5m"
# Time-based (issue 12): seconds per second, i.e. participants (or streams) at once, whatever Zoom's cadence.
QUALITY_RATE = "account_product_media_quality_site:zoom_qss_quality_time_seconds:rate5m"
SITE_TIME = "account_site:zoom_qss_media_time_seconds:rate5m"
SITE_P95_LATENCY = "account_site:zoom_qss_media_latency_seconds:p95_rate5m"
SITE_AVG_LOSS = "account_site:zoom_qss_media_packet_loss_ratio:avg_rate5m"
DC_TIME = "account_data_center:zoom_qss_media_time_seconds:rate5m"
DC_P95_LATENCY = "account_data_center:zoom_qss_media_latency_seconds:p95_rate5m"
PHONE_MOS_POOR_RATIO = "account:zoom_qss_phone_mos_poor:ratio_rate5m"
SLO_WINDOWS = ("5m", "30m", "1h", "6h")
_SIGNATURE_FAILURES = 'outcome=~"bad_signature|missing_signature|stale_timestamp"'
_SERVER_ERRORS = 'outcome=~"overloaded|error"'


def slo_ratio(window: str) -> str:
    """Name of the recorded share of graded audio participant time that was poor or bad over `window`."""
    return f"account_product:zoom_qss_audio_time_poor:ratio_rate{window}"


@dataclass(frozen=True, slots=True)
class Recording:
    record: str
    expr: str


@dataclass(frozen=True, slots=True)
class Alert:
    name: str
    expr: str
    severity: str
    summary: str
    description: str
    for_: str = "0m"


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    interval: str
    rules: tuple[Recording | Alert, ...]


def _by(labels: str, expr: str) -> str:
    return f"sum by ({labels}) ({expr})"


def _media_recordings() -> tuple[Recording, ...]:
    keep = "account, product, media, site"
    site, dc = '{site!=""}', '{data_center!~"|unknown"}'
    site_latency = _by("account, site, le", LATENCY_BUCKETS + site)
    site_loss_sum = _by("account, site", LOSS_SUM + site)
    site_loss_count = _by("account, site", LOSS_COUNT + site)
    dc_latency = _by("account, data_center, le", f"rate(zoom_qss_media_latency_seconds_bucket{dc}[5m])")
    return (
        Recording(LATENCY_BUCKETS, _by(f"{keep}, le", "rate(zoom_qss_media_latency_seconds_bucket[5m])")),
        Recording(JITTER_BUCKETS, _by(f"{keep}, le", "rate(zoom_qss_media_jitter_seconds_bucket[5m])")),
        Recording(LOSS_BUCKETS, _by(f"{keep}, le", "rate(zoom_qss_media_packet_loss_ratio_bucket[5m])")),
        Recording(LOSS_SUM, _by(keep, "rate(zoom_qss_media_packet_loss_ratio_sum[5m])")),
        Recording(LOSS_COUNT, _by(keep, "rate(zoom_qss_media_packet_loss_ratio_count[5m])")),
        Recording(
            QUALITY_RATE,
            _by("account, product, media, quality, site", "rate(zoom_qss_quality_time_seconds_total[5m])"),
        ),
        Recording(SITE_TIME, _by("account, site", f"rate(zoom_qss_media_time_seconds_total{site}[5m])")),
        Recording(SITE_P95_LATENCY, f"histogram_quantile(0.95, {site_latency})"),
        Recording(SITE_AVG_LOSS, f"{site_loss_sum}\n/\n{site_loss_count}"),
        Recording(DC_TIME, _by("account, data_center", f"rate(zoom_qss_media_time_seconds_total{dc}[5m])")),
        Recording(DC_P95_LATENCY, f"histogram_quantile(0.95, {dc_latency})"),
    )


def _slo_recordings() -> tuple[Recording, ...]:
    audio = 'zoom_qss_quality_time_seconds_total{media="audio"}'
    poor = 'zoom_qss_quality_time_seconds_total{media="audio", quality=~"poor|bad"}'
    out = []
    for window in SLO_WINDOWS:
        everything = _by("account, product", f"rate({audio}[{window}])")
        # `or 0 * ...` keeps the ratio at 0 (not absent) for a product that never had a poor minute.
        expr = (
            f"(\n  {_by('account, product', f'rate({poor}[{window}])')}\n  or\n  0 * {everything}\n)\n/\n{everything}"
        )
        out.append(Recording(slo_ratio(window), expr))
    return tuple(out)


def _phone_recordings() -> tuple[Recording, ...]:
    poor = f'zoom_qss_phone_mos_bucket{{le="{guidance.PHONE_MOS_POOR.value:g}"}}'
    expr = f"{_by('account', f'rate({poor}[5m])')}\n/\n{_by('account', 'rate(zoom_qss_phone_mos_count[5m])')}"
    return (Recording(PHONE_MOS_POOR_RATIO, expr),)


def recording_groups() -> tuple[Group, ...]:
    return (
        Group("zoom-qss-media.recording", "1m", _media_recordings()),
        Group("zoom-qss-slo.recording", "1m", _slo_recordings() + _phone_recordings()),
    )


def _burn(window_long: str, window_short: str, factor: float) -> str:
    limit = f"({factor:g} * (1 - {guidance.QUALITY_SLO:g}))"
    return f"{slo_ratio(window_long)} > {limit}\nand\n{slo_ratio(window_short)} > {limit}"


def _quality_alerts() -> tuple[Alert, ...]:
    slo = f"{guidance.QUALITY_SLO:.0%}"
    volume = guidance.MIN_SITE_STREAMS
    loss, latency = guidance.PACKET_LOSS.value, guidance.LATENCY.value
    mos = guidance.PHONE_MOS_POOR.value
    return (
        Alert(
            "ZoomQualityBudgetBurnFast",
            _burn("1h", "5m", 14.4),
            "critical",
            "Zoom {{ $labels.product }} audio quality is burning the error budget fast ({{ $labels.account }})",
            f"{{{{ $value | humanizePercentage }}}} of graded audio participant time was poor or bad in the "
            f"last hour; the SLO allows {1 - guidance.QUALITY_SLO:.0%} ({slo} good or fair). At this rate a "
            "30-day budget is gone in about two days.",
            "2m",
        ),
        Alert(
            "ZoomQualityBudgetBurnSlow",
            _burn("6h", "30m", 6),
            "warning",
            "Zoom {{ $labels.product }} audio quality is eating the error budget ({{ $labels.account }})",
            f"{{{{ $value | humanizePercentage }}}} of graded audio participant time was poor or bad over "
            f"the last 6 hours, six times what the {slo} SLO allows.",
            "15m",
        ),
        Alert(
            "ZoomSitePacketLossHigh",
            f"{SITE_AVG_LOSS} > {loss:g}\nand on (account, site)\n{SITE_TIME} > {volume:g}",
            "warning",
            "Packet loss at {{ $labels.site }} is above Zoom's guidance",
            "Average packet loss of Zoom media at site {{ $labels.site }} (account {{ $labels.account }}) is "
            f"{{{{ $value | humanizePercentage }}}} over 5 minutes; Zoom's guidance is {loss:.0%} or less.",
            "5m",
        ),
        Alert(
            "ZoomSiteLatencyHigh",
            f"{SITE_P95_LATENCY} > {latency:g}\nand on (account, site)\n{SITE_TIME} > {volume:g}",
            "warning",
            "Zoom latency at {{ $labels.site }} is above Zoom's guidance",
            "The 95th percentile of Zoom media latency at site {{ $labels.site }} (account {{ $labels.account }}) "
            f"is {{{{ $value | humanizeDuration }}}}; Zoom's guidance is {latency * 1000:g} ms or less.",
            "5m",
        ),
        Alert(
            "ZoomDataCentreLatencyHigh",
            f"{DC_P95_LATENCY} > {latency:g}\nand on (account, data_center)\n{DC_TIME} > {volume:g}",
            "warning",
            "Zoom latency through data centre {{ $labels.data_center }} is above Zoom's guidance",
            "The 95th percentile of media latency of participants connected to Zoom data centre "
            "{{ $labels.data_center }} (account {{ $labels.account }}) is {{ $value | humanizeDuration }}; "
            f"Zoom's guidance is {latency * 1000:g} ms or less.",
            "5m",
        ),
        Alert(
            "ZoomPhoneMOSDegraded",
            f"{PHONE_MOS_POOR_RATIO} > {guidance.PHONE_MOS_POOR_SHARE:g}\nand on (account)\n"
            f"{_by('account', 'zoom_qss_phone_active_calls')} >= {guidance.PHONE_MIN_ACTIVE_CALLS}",
            "warning",
            "Zoom Phone call quality is degraded ({{ $labels.account }})",
            f"{{{{ $value | humanizePercentage }}}} of Zoom Phone MOS samples are {mos:g} or lower (poor) over "
            f"5 minutes, more than {guidance.PHONE_MOS_POOR_SHARE:.0%}.",
            "5m",
        ),
    )


def _exporter_alerts() -> tuple[Alert, ...]:
    requests = "zoom_qss_webhook_requests_total"
    accepted = f'{requests}{{outcome="accepted"}}'
    otlp_failed = 'zoom_qss_otlp_exports_total{outcome="failed"}'
    otlp_ok = 'zoom_qss_otlp_exports_total{outcome="ok"}'
    return (
        Alert(
            "QssExporterDown",
            f'up{{job="{JOB}"}} == 0\nor\nabsent(up{{job="{JOB}"}})',
            "critical",
            "qss-exporter is down or not scraped",
            "Prometheus has not scraped qss-exporter{{ with $labels.instance }} at {{ . }}{{ end }} (job "
            + JOB
            + ") for 5 minutes, or the job has no target: Zoom webhooks are not being received or not counted.",
            "5m",
        ),
        Alert(
            "QssExporterNoWebhooks",
            f"{_by('job', f'increase({accepted}[30m])')} == 0\nand\n"
            f"{_by('job', f'increase({accepted}[30m] offset 1w)')} > 10",
            "warning",
            "No Zoom webhooks accepted for 30 minutes ({{ $labels.job }})",
            "qss-exporter accepted no webhook in the last 30 minutes, although it accepted more than 10 in the "
            "same half hour a week ago: Zoom may have disabled the event subscription, or the ingress is broken.",
            "15m",
        ),
        Alert(
            "QssExporterSignatureFailures",
            f"{_by('job', f'rate({requests}{{{_SIGNATURE_FAILURES}}}[5m])')}\n/\n{_by('job', f'rate({requests}[5m])')}"
            f" > 0.2\nand\n{_by('job', f'increase({requests}{{{_SIGNATURE_FAILURES}}}[5m])')} > 10",
            "warning",
            "Many webhooks fail signature verification ({{ $labels.job }})",
            "{{ $value | humanizePercentage }} of webhook requests were refused for a wrong or missing signature or "
            "a stale timestamp over 5 minutes: a wrong or rotated secret token, a clock problem, or someone "
            "probing the endpoint.",
            "5m",
        ),
        Alert(
            "QssExporterWebhookErrors",
            f"{_by('job', f'rate({requests}{{{_SERVER_ERRORS}}}[5m])')}\n/\n{_by('job', f'rate({requests}[5m])')}"
            " > 0.01",
            "warning",
            "qss-exporter answers Zoom with server errors ({{ $labels.job }})",
            "{{ $value | humanizePercentage }} of webhook requests got a 5xx (overloaded or internal error) over "
            "5 minutes; Zoom retries them up to 85 minutes later, so dashboards lag behind.",
            "10m",
        ),
        Alert(
            "QssExporterSeriesDropped",
            f"{_by('job, family', 'increase(zoom_qss_series_dropped_total[15m])')} > 0",
            "warning",
            "qss-exporter refuses new series of {{ $labels.family }} (series cap reached)",
            "{{ $value | humanize }} new series of {{ $labels.family }} were refused in 15 minutes because the "
            "exporter holds limits.max_series series: some sites, versions or data centres are missing.",
        ),
        Alert(
            "QssExporterDedupeWindowShrunk",
            f"{_by('job', 'increase(zoom_qss_dedupe_evicted_total[15m])')} > 0",
            "warning",
            "qss-exporter forgets delivered events before pipeline.dedupe_window_seconds ({{ $labels.job }})",
            "{{ $value | humanize }} remembered events were dropped in 15 minutes because pipeline.dedupe_max_entries "
            "was reached: a Zoom retry of an older event is counted a second time.",
        ),
        Alert(
            "QssExporterOtlpExportFailing",
            f"{_by('job, signal', f'increase({otlp_failed}[15m])')} > 0\nunless\n"
            f"{_by('job, signal', f'increase({otlp_ok}[15m])')} > 0",
            "warning",
            "OTLP export of {{ $labels.signal }} is failing ({{ $labels.job }})",
            "Every OTLP export of {{ $labels.signal }} failed in the last 15 minutes ({{ $value | humanize }} "
            "failed attempts): the backend behind the OpenTelemetry Collector is missing data. /metrics is "
            "not affected.",
            "5m",
        ),
        Alert(
            "QssExporterZoomApiRateLimited",
            f"{_by('job, account, limit_type', 'increase(zoom_qss_api_rate_limited_total[15m])')} > 5",
            "warning",
            "Zoom rate-limits the poller of {{ $labels.account }} ({{ $labels.limit_type }})",
            "Zoom answered 429 ({{ $labels.limit_type }}) {{ $value | humanize }} times in 15 minutes: other apps "
            "on the account share its limits, or poller.heavy_per_second is above the account's plan. The poller "
            "backs off, so QoS summaries arrive late.",
            "5m",
        ),
        Alert(
            "QssExporterZoomApiBudgetNearlySpent",
            "max by (job, account) (zoom_qss_api_daily_budget_used / zoom_qss_api_daily_budget_limit) > 0.9",
            "warning",
            "The poller of {{ $labels.account }} has spent {{ $value | humanizePercentage }} of today's API budget",
            "The REST poller used more than 90 % of poller.daily_budget for today (UTC): further polls wait for "
            "tomorrow and the backlog grows.",
        ),
        Alert(
            "QssExporterZoomAuthFailing",
            _by("job, account", 'increase(zoom_qss_oauth_token_requests_total{outcome="unauthorized"}[15m])') + " > 0",
            "critical",
            "Zoom refuses the OAuth credentials of {{ $labels.account }}",
            "Zoom refused the Server-to-Server OAuth client id or secret of {{ $labels.account }} in the last 15 "
            "minutes: the poller (and the WebSocket source) cannot work until the credentials are fixed.",
        ),
        Alert(
            "QssExporterWebSocketDown",
            "max by (job, account) (zoom_qss_websocket_connected) == 0",
            "warning",
            "The Zoom WebSocket of {{ $labels.account }} is not connected",
            "The WebSocket source of {{ $labels.account }} has not been connected for 10 minutes; Zoom does not "
            "replay events sent while it is down.",
            "10m",
        ),
        Alert(
            "QssExporterNoLeader",
            "sum by (job, source) (zoom_qss_leader) == 0",
            "warning",
            "No replica runs {{ $labels.source }} ({{ $labels.job }})",
            "No qss-exporter replica has run the pulled source {{ $labels.source }} for 2 minutes, longer than a "
            "takeover takes: the replicas cannot reach Redis, so nobody holds its lease. Webhooks are still counted; "
            "the poller's summaries or the WebSocket's events are not.",
            "2m",
        ),
        Alert(
            "QssExporterSeveralLeaders",
            "sum by (job, source) (zoom_qss_leader) > 1",
            "critical",
            "{{ $value }} replicas run {{ $labels.source }} at once ({{ $labels.job }})",
            "{{ $value }} qss-exporter replicas have run the pulled source {{ $labels.source }} at the same time for 2 "
            "minutes: replicas with state.backend local, or with different Redis servers or key prefixes. Each "
            "calls Zoom on its own, spending the API budget or holding a second WebSocket connection.",
            "2m",
        ),
        Alert(
            "QssExporterSharedStateDown",
            "min by (job, instance) (zoom_qss_state_shared_up) == 0",
            "warning",
            "{{ $labels.instance }} decides webhooks without the shared state ({{ $labels.job }})",
            "Replica {{ $labels.instance }} has not had an answer from Redis for 2 minutes: it answers webhooks "
            "from its own state, so a Zoom retry reaching another replica is counted twice, its data events enrich "
            "only its own records and the active gauges are its own view.",
            "2m",
        ),
        Alert(
            "QssExporterParseErrors",
            f"{_by('job, field', 'increase(zoom_qss_parse_errors_total[1h])')} > 10",
            "info",
            "Zoom values of field {{ $labels.field }} cannot be parsed",
            "{{ $value | humanize }} values of field {{ $labels.field }} were dropped as unparsable in the last "
            "hour: Zoom may have changed a format.",
            "15m",
        ),
    )


def alert_groups() -> tuple[Group, ...]:
    return (
        Group("zoom-qss-quality.alerts", "1m", _quality_alerts()),
        Group("qss-exporter.alerts", "1m", _exporter_alerts()),
    )


def _rule(rule: Recording | Alert, runbook: str) -> dict[str, Any]:
    if isinstance(rule, Recording):
        return {"record": rule.record, "expr": rule.expr}
    out: dict[str, Any] = {"alert": rule.name, "expr": rule.expr}
    if rule.for_ != "0m":
        out["for"] = rule.for_
    out["labels"] = {"severity": rule.severity}
    out["annotations"] = {
        "summary": rule.summary,
        "description": rule.description,
        "runbook_url": f"{runbook}#{rule.name.lower()}",
    }
    return out


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, so the rule files read like hand-written ones."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(groups: tuple[Group, ...], header: str, runbook: str = RUNBOOK) -> str:
    """The rule file text (Prometheus `groups:` format) with a comment header."""
    document = {
        "groups": [
            {"name": g.name, "interval": g.interval, "rules": [_rule(r, runbook) for r in g.rules]} for g in groups
        ]
    }
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True)
    return header + body
