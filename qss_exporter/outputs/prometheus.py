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
import re

from qss_exporter.store import CallbackFamily, HistogramFamily, Store, label_text

__all__ = ["OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "negotiate", "render"]

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


# RFC 9110 12.4.2: weight = OWS ";" OWS "q=" qvalue, qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
_OPENMETRICS = "application/openmetrics-text"
_TEXT_RANGES = ("text/plain", "text/*", "*/*")  # most specific first: it decides (RFC 9110 12.5.1)


def _weights(accept: str) -> dict[str, float]:
    """Media range (lower case) -> its highest weight in an Accept header; entries with a malformed qvalue skipped."""
    weights: dict[str, float] = {}
    for element in accept.split(","):
        media_range, *params = element.split(";")
        media_range = media_range.strip().lower()
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                q = float(value) if _QVALUE.fullmatch(value) else -1.0
        if media_range and q >= 0:
            weights[media_range] = max(q, weights.get(media_range, 0.0))
    return weights


def negotiate(accept: str | None) -> bool:
    """True when the scraper asks for OpenMetrics: named with a weight above 0, and not below the text format's.

    A weight of 0 in any form (`q=0`, `q=0.000`, `Q=0`) refuses it; on equal weights OpenMetrics wins, as
    Prometheus's default Accept header lists it first.
    """
    if not accept:
        return False
    weights = _weights(accept)
    openmetrics = weights.get(_OPENMETRICS, 0.0)
    if openmetrics <= 0:
        return False
    text = next((weights[media] for media in _TEXT_RANGES if media in weights), None)
    return text is None or openmetrics >= text


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
