from __future__ import annotations

import math
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from qss_exporter.outputs.prometheus import negotiate, render
from qss_exporter.store import Sample, Store


def _store() -> Store:
    store = Store(1000, lambda: 0.0)
    requests = store.counter("app_requests_total", "Requests by outcome.", ("outcome",))
    requests.inc(("ok",), 3)
    requests.inc(('we"ird\\\n',), 1)
    latency = store.histogram("app_latency_seconds", "Latency.\nSecond line.", ("path",), (0.1, 1.0))
    for value in (0.05, 0.5, 2.0):
        latency.observe(("/a",), value)
    rssi = store.histogram("app_rssi_dbm", "RSSI.", (), (-80, -60))
    rssi.observe((), -70.0)
    store.gauge("app_info", "Info.", ("version",)).set(("1.0",), 1)
    store.callback("app_active", "Active.", ("k",), lambda: [Sample(("x",), 4.0)])
    store.callback("app_unlabelled", "Unlabelled.", (), lambda: [Sample((), 0.25)])
    return store


def test_text_format_round_trips_through_prometheus_client_parser() -> None:
    families = {f.name: f for f in parse_text(render(_store()).decode())}
    requests = {s.labels["outcome"]: s.value for s in families["app_requests"].samples}
    assert requests == {"ok": 3.0, 'we"ird\\\n': 1.0}
    samples = {(s.name, s.labels.get("le")): s.value for s in families["app_latency_seconds"].samples}
    assert samples[("app_latency_seconds_bucket", "0.1")] == 1
    assert samples[("app_latency_seconds_bucket", "1.0")] == 2
    assert samples[("app_latency_seconds_bucket", "+Inf")] == 3
    assert samples[("app_latency_seconds_count", None)] == 3
    assert samples[("app_latency_seconds_sum", None)] == pytest.approx(2.55)
    assert families["app_active"].samples[0].value == 4.0
    assert families["app_unlabelled"].samples[0].value == 0.25


def test_openmetrics_is_valid_and_ends_with_eof() -> None:
    text = render(_store(), openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]  # the OpenMetrics parser is untyped
    assert families["app_requests"].type == "counter"
    # Negative-valued histograms expose only buckets in OpenMetrics (_sum must be non-negative).
    assert {s.name for s in families["app_rssi_dbm"].samples} == {"app_rssi_dbm_bucket"}


def test_promtool_accepts_the_text_format(promtool: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=render(_store()), capture_output=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("accept", "openmetrics"),
    [
        (None, False),
        ("text/plain", False),
        ("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),
        ("application/openmetrics-text; q=0", False),
        ("text/plain;version=0.0.4;q=0.5, application/openmetrics-text;version=0.0.1;q=0.75", True),
    ],
)
def test_negotiation(accept: str | None, openmetrics: bool) -> None:
    assert negotiate(accept) is openmetrics


def test_non_finite_values_are_written_as_prometheus_words() -> None:
    store = Store(10, lambda: 0.0)
    gauge = store.gauge("g", "doc", ("k",))
    gauge.set(("nan",), math.nan)
    gauge.set(("inf",), math.inf)
    text = render(store).decode()
    assert 'g{k="nan"} NaN' in text
    assert 'g{k="inf"} +Inf' in text
