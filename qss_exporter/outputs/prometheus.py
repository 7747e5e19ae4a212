"""Prometheus text (0.0.4) and OpenMetrics (1.0.0) rendering of a store, and content negotiation.

Rendered directly from the store's series with their label text cached at creation: measured ~20x
faster than `prometheus_client.generate_latest` over the same data (bench/scrape). Sample output:

    # HELP zoom_qss_media_latency_seconds One-way media latency per participant-minute.
    # TYPE zoom_qss_media_latency_seconds histogram
    zoom_qss_media_latency_seconds_bucket{account="acme",product="meeting",media="audio",le="0.005"} 0
    ...
    zoom_qss_media_latency_seconds_sum{account="acme",product="meeting",media="audio"} 0.134
    zoom_qss_media_latency_seconds_count{account="acme",product="meeting",media="audio"} 1
"""

from __future__ import annotations

import math

from qss_exporter.store import CallbackFamily, HistogramFamily, Store, label_text

__all__ = ["OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "negotiate", "render"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def negotiate(accept: str | None) -> bool:
    """True when the scraper asks for OpenMetrics (as Prometheus does when it prefers it)."""
    if not accept:
        return False
    for part in accept.split(","):
        media_type, _, params = part.strip().partition(";")
        if media_type.strip() == "application/openmetrics-text":
            # A q=0 entry means "not acceptable".
            return not any(p.strip().replace(" ", "") in ("q=0", "q=0.0") for p in params.split(";"))
    return False


def _number(value: float) -> str:
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    if math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"


def _bound(value: float) -> str:
    # Canonical `le` values as prometheus_client writes them ("0.005", "1.0", "+Inf").
    return repr(float(value)) if math.isfinite(value) else "+Inf"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def render(store: Store, openmetrics: bool = False) -> bytes:
    """Render every family of the store, in registration order."""
    out: list[str] = []
    append = out.append
    for family in store.families():
        name = family.name
        meta_name = name.removesuffix("_total") if openmetrics and family.type == "counter" else name
        append(f"# HELP {meta_name} {_escape_help(family.documentation)}\n# TYPE {meta_name} {family.type}\n")
        if isinstance(family, CallbackFamily):
            for sample in family.collect():
                text = label_text(family.labelnames, sample.labels)
                append(f"{name}{{{text}}} {_number(sample.value)}\n" if text else f"{name} {_number(sample.value)}\n")
        elif isinstance(family, HistogramFamily):
            bounds = [*(_bound(b) for b in family.buckets), "+Inf"]
            # OpenMetrics requires a histogram's _sum to be a counter, so never negative; a family
            # that can observe negative values (Wi-Fi RSSI in dBm) exposes only its buckets there
            # (_count is the +Inf bucket, and OpenMetrics allows _count only together with _sum).
            with_sum = not (openmetrics and family.buckets[0] < 0)
            for series in family.series():
                text = series.text
                labels = f"{{{text}}}" if text else ""
                bucket = f"{name}_bucket{{{text}," if text else f"{name}_bucket{{"
                cumulative = 0
                for le, count in zip(bounds, series.counts, strict=True):
                    cumulative += count
                    append(f'{bucket}le="{le}"}} {cumulative}\n')
                if with_sum:
                    append(f"{name}_sum{labels} {_number(series.sum)}\n{name}_count{labels} {cumulative}\n")
        else:
            for scalar in family.series():
                text = scalar.text
                value = _number(scalar.value)
                append(f"{name}{{{text}}} {value}\n" if text else f"{name} {value}\n")
    if openmetrics:
        append("# EOF\n")
    return "".join(out).encode("utf-8")
