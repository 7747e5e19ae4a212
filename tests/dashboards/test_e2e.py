"""End to end: `qss-exporter demo` scraped by a real Prometheus with the bundled rules loaded.

Every dashboard query, variable query and rule expression is evaluated through Prometheus's HTTP API:
no errors, every panel query returns data, and the demo's injected incidents fire their alerts.

The demo runs 60 times faster than real time (a simulated minute per second) and its incidents last seven
simulated minutes, so Prometheus loads a time-compressed copy of the rules: every range, offset and group
interval divided by 30 (5m -> 10s, five scrapes at the 2 s interval) and every `for:` shortened to 2s.
The rules as committed are evaluated too, as instant queries, to prove they run.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboards.artefacts import (
    RULE_FILES,
    dashboard_expressions,
    load_dashboards,
    load_rules,
    scale_durations,
    substitute,
    variable_queries,
)
from tests.dashboards.prometheus_process import PrometheusProcess
from tests.process import ExporterProcess

pytestmark = pytest.mark.slow

SCRAPE_INTERVAL = "2s"
TIME_FACTOR = 1 / 30
DEADLINE = 75.0  # seconds from the demo's start for everything to show up
# Alerts of the injected incidents, with the label that names the culprit.
INCIDENT_ALERTS = {
    ("ZoomSitePacketLossHigh", "site", "london-hq"),
    ("ZoomDataCentreLatencyHigh", "data_center", "AMS"),
    ("ZoomPhoneMOSDegraded", "account", "acme"),
}
HEALTH_ALERTS = "QssExporterDown|QssExporterSignatureFailures|QssExporterWebhookErrors|QssExporterSeriesDropped"


@pytest.fixture
def prometheus_binary(promtool: str) -> str:
    """Debian's `prometheus` package ships both; missing is a skip locally and a failure in CI."""
    path = shutil.which("prometheus") or str(Path(promtool).with_name("prometheus"))
    if not Path(path).exists():
        pytest.fail("the prometheus binary is missing although promtool is installed")
    return path


def _compressed_rules(directory: Path) -> list[Path]:
    paths = []
    for source in RULE_FILES:
        text = scale_durations(source.read_text(), TIME_FACTOR)
        path = directory / source.name
        path.write_text(re.sub(r"^(\s*)for: .+$", r"\1for: 2s", text, flags=re.MULTILINE))
        paths.append(path)
    return paths


def _has_value(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def _panel_queries() -> dict[str, str]:
    queries = {}
    for name, dashboard in load_dashboards().items():
        for expression in dashboard_expressions(name, dashboard):
            queries[expression.where] = substitute(expression.expr)
    return queries


def _empty_panels(prometheus: PrometheusProcess, queries: dict[str, str]) -> dict[str, str]:
    """Queries (by panel) that return no finite value yet; an error in any of them fails at once."""
    return {where: expr for where, expr in queries.items() if not _has_value(prometheus.query(expr))}


def _fired_incidents(prometheus: PrometheusProcess) -> set[tuple[str, str, str]]:
    names = "|".join(name for name, _, _ in INCIDENT_ALERTS)
    result = prometheus.query(f'max_over_time(ALERTS{{alertstate="firing", alertname=~"{names}"}}[5m])')
    fired = set()
    for sample in result:
        labels = sample["metric"]
        for name, label, value in INCIDENT_ALERTS:
            if labels["alertname"] == name and labels.get(label) == value:
                fired.add((name, label, value))
    return fired


def test_dashboards_and_rules_against_a_real_prometheus(prometheus_binary: str, tmp_path: Path) -> None:
    started = time.monotonic()
    # Every label: the dashboards have data-centre, OS and client-version panels, and an alert by data centre.
    demo = ExporterProcess(
        ["demo", "--webhook-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--labels", "all"]
    )
    prometheus: PrometheusProcess | None = None
    try:
        url = demo.wait_for(r"metrics:\s+(http://\S+)/metrics").group(1)
        target = url.removeprefix("http://")
        prometheus = PrometheusProcess(
            prometheus_binary, tmp_path, target, _compressed_rules(tmp_path), interval=SCRAPE_INTERVAL
        )
        prometheus.wait_ready()

        # Every rule group loaded, and the committed rule expressions run as they are.
        groups = prometheus.api("rules")["groups"]
        loaded = {rule["name"] for group in groups for rule in group["rules"]}
        committed = load_rules()
        assert loaded == {rule.get("record") or rule["alert"] for rule in committed}

        queries = _panel_queries()
        empty = queries
        fired: set[tuple[str, str, str]] = set()
        while time.monotonic() - started < DEADLINE and (empty or not fired):
            time.sleep(2)
            empty = _empty_panels(prometheus, empty)
            fired = _fired_incidents(prometheus)
        assert not empty, f"panels without data after {time.monotonic() - started:.0f} s: {sorted(empty)}"
        assert fired, f"no injected incident fired its alert within {DEADLINE:.0f} s"

        for rule in committed:
            name = rule.get("record") or rule["alert"]
            result = prometheus.query(rule["expr"])  # raises on a PromQL error
            if "record" in rule and "offset" not in rule["expr"]:
                assert result, f"recording rule {name} returns nothing"
        for name, dashboard in load_dashboards().items():
            for variable, selector, label in variable_queries(dashboard):
                values = prometheus.api(f"label/{label}/values", **{"match[]": substitute(selector)})
                assert values, f"{name}: variable {variable} has no values"

        # The health alerts stay quiet once the exporter is scraped (before the first scrape `up` is absent).
        firing = prometheus.query(f'ALERTS{{alertstate="firing", alertname=~"{HEALTH_ALERTS}"}}')
        assert firing == [], firing
        assert demo.terminate() == 0
    finally:
        if prometheus is not None:
            prometheus.close()
        demo.kill()
