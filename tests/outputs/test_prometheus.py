from __future__ import annotations

import math
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from qss_exporter.outputs.prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, negotiate, render
from qss_exporter.store import Sample, Store
from tests.conftest import AgentFactory


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
        # RFC 9110 12.4.2: qvalue = "0" [ "." 0*3DIGIT ], and parameter names are case-insensitive.
        ("application/openmetrics-text;q=0.00", False),
        ("application/openmetrics-text;q=0.000", False),
        ("application/openmetrics-text;Q=0", False),
        ("application/openmetrics-text ; Q = 0.", False),
        ("Application/OpenMetrics-Text;version=1.0.0", True),
        # The scraper prefers the text format (Prometheus's scrape_protocols with text first): text.
        ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1", False),
        ("application/openmetrics-text;q=0.4,text/*;q=0.5", False),
        ("application/openmetrics-text;q=0.5,text/plain;q=0", True),
        ("application/openmetrics-text;q=0.001", True),
        # A malformed qvalue makes its entry unusable, never a reason to fail.
        ("application/openmetrics-text;q=1.5", False),
        ("application/openmetrics-text;q=0.0001", False),
        ("application/openmetrics-text;q=abc", False),
        (",,;;", False),
    ],
)
def test_negotiation(accept: str | None, openmetrics: bool) -> None:
    assert negotiate(accept) is openmetrics


_ZEROS = st.sampled_from(["0", "0.", "0.0", "0.00", "0.000"])
_WEIGHTS = st.one_of(
    _ZEROS.map(lambda text: (text, 0.0)),
    st.integers(1, 999).map(lambda n: (f"0.{n:03d}".rstrip("0"), n / 1000)),
    st.sampled_from(["1", "1.", "1.0", "1.00", "1.000"]).map(lambda text: (text, 1.0)),
)
_OWS = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def _entry(draw: st.DrawFn, media: str) -> tuple[str, float]:
    """One Accept element for `media` with random case, whitespace and an optional weight; (text, its q)."""
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in media)
    params = [f"version={draw(st.sampled_from(['1.0.0', '0.0.1', '0.0.4']))}"] if draw(st.booleans()) else []
    q = 1.0
    if draw(st.booleans()):
        text, q = draw(_WEIGHTS)
        name = draw(st.sampled_from(["q", "Q"]))
        params.insert(draw(st.integers(0, len(params))), f"{name}={text}")
    return cased + "".join(f"{draw(_OWS)};{draw(_OWS)}{param}" for param in params), q


@given(st.data())
def test_openmetrics_is_chosen_exactly_when_the_scraper_weights_it_above_zero_and_not_below_text(
    data: st.DataObject,
) -> None:
    om, om_q = data.draw(_entry("application/openmetrics-text"))
    entries = [om]
    text_q: float | None = None
    if data.draw(st.booleans()):
        text, text_q = data.draw(_entry(data.draw(st.sampled_from(["text/plain", "text/*", "*/*"]))))
        entries.append(text)
    entries = data.draw(st.permutations(entries))
    accept = ",".join(f"{data.draw(_OWS)}{entry}{data.draw(_OWS)}" for entry in entries)
    assert negotiate(accept) is (om_q > 0 and (text_q is None or om_q >= text_q)), accept


@given(st.text())
def test_any_accept_header_is_answered(accept: str) -> None:
    assert negotiate(accept) in (True, False)


def test_non_finite_values_are_written_as_prometheus_words() -> None:
    store = Store(10, lambda: 0.0)
    gauge = store.gauge("g", "doc", ("k",))
    gauge.set(("nan",), math.nan)
    gauge.set(("inf",), math.inf)
    text = render(store).decode()
    assert 'g{k="nan"} NaN' in text
    assert 'g{k="inf"} +Inf' in text


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3", OPENMETRICS_CONTENT_TYPE),
        ("application/openmetrics-text; Q=0.000, text/plain", TEXT_CONTENT_TYPE),
        ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4", TEXT_CONTENT_TYPE),
    ],
)
async def test_the_running_agent_answers_in_the_negotiated_format(
    start_agent: AgentFactory, accept: str, content_type: str
) -> None:
    running = await start_agent()
    response = await running.scrape_text(accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.text.endswith("# EOF\n") is (content_type == OPENMETRICS_CONTENT_TYPE)
