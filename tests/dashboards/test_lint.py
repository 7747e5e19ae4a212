"""Dashboard and rule lint: Grafana conventions, and every metric and label exists in docs/metrics.md."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.dashboards.artefacts import (
    Expression,
    catalogue,
    dashboard_expressions,
    load_dashboards,
    load_rules,
    metric_names,
    panels,
    selectors,
)
from tests.process import REPO

DASHBOARDS = load_dashboards()
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
UNITS = {"s", "percentunit", "short", "none", "Bps", "reqps", "cps", "cpm"}
# Series Prometheus makes itself, with their labels (job and instance come from the scrape).
BUILTIN = {
    "up": {"job", "instance"},
    "scrape_duration_seconds": {"job", "instance"},
    "ALERTS": {"alertname", "alertstate", "severity"},
}
TARGET_LABELS = {"job", "instance"}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
GRAFANA_VARIABLES = {"__rate_interval"}


def _recorded() -> dict[str, set[str]]:
    """Recording rule name -> the labels its level (`account_product:...`) promises, `le` for buckets."""
    out = {}
    for rule in load_rules():
        if "record" in rule:
            level, metric, _ = rule["record"].split(":")
            labels = set(re.findall(r"data_center|[a-z]+", level))
            out[rule["record"]] = labels | ({"le"} if metric.endswith("_bucket") else set())
    return out


RECORDED = _recorded()


def _labels_of(metric: str) -> set[str] | None:
    """Label names `metric` may carry, or None when it is unknown to the catalogue, the rules and Prometheus."""
    families = catalogue()
    if metric in BUILTIN:
        return BUILTIN[metric]
    if metric in RECORDED:
        return RECORDED[metric]
    if metric in families and families[metric][0] != "histogram":
        return families[metric][1] | TARGET_LABELS
    for suffix in HISTOGRAM_SERIES:
        family = metric.removesuffix(suffix)
        if metric.endswith(suffix) and families.get(family, ("", set()))[0] == "histogram":
            return families[family][1] | TARGET_LABELS | ({"le"} if suffix == "_bucket" else set())
    return None


def _all_expressions() -> list[Expression]:
    expressions = [e for name, d in DASHBOARDS.items() for e in dashboard_expressions(name, d)]
    for rule in load_rules():
        expressions.append(Expression(f"rule {rule.get('record') or rule['alert']}", rule["expr"]))
    return expressions


def _widgets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in panels(dashboard) if panel["type"] != "row"]


def test_the_five_dashboards_exist() -> None:
    assert set(DASHBOARDS) == {
        "zoom-qss-overview.json",
        "zoom-qss-network.json",
        "zoom-qss-sessions.json",
        "zoom-qss-phone.json",
        "zoom-qss-exporter.json",
    }
    uids = [dashboard["uid"] for dashboard in DASHBOARDS.values()]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_dashboard_conventions(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] >= 39
    assert dashboard.get("id") is None  # importable anywhere: Grafana assigns the id
    assert dashboard["title"]
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = dashboard["templating"]["list"]
    assert variables[0] == {**variables[0], "name": "datasource", "type": "datasource", "query": "prometheus"}
    # linked to the other dashboards (by their shared tag)
    assert "zoom-qss" in dashboard["tags"]
    assert any(link["type"] == "dashboards" and link["tags"] == ["zoom-qss"] for link in dashboard["links"])
    for panel in panels(dashboard):
        assert panel.get("title"), f"panel {panel['id']} has no title"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    for panel in _widgets(dashboard):
        where = f"{name} / {panel['title']}"
        assert panel.get("description"), f"{where}: no description"
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        assert unit in UNITS or unit.startswith("suffix:"), f"{where}: unit {unit!r}"
        assert panel["datasource"] == DATASOURCE, where
        assert panel["targets"], f"{where}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
            assert target["expr"].strip(), where


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_time_series_show_their_legend(name: str) -> None:
    """Grafana's default, but the SDK writes the schema's zero value (hidden) unless told."""
    for panel in _widgets(DASHBOARDS[name]):
        if panel["type"] == "timeseries":
            assert panel["options"]["legend"]["showLegend"] is True, panel["title"]


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_what_the_sdk_cannot_express_is_there(name: str) -> None:
    """The alerts annotation's Prometheus fields and each query variable's definition (docs/dashboards.md)."""
    dashboard = DASHBOARDS[name]
    (annotation,) = dashboard["annotations"]["list"]
    assert annotation["titleFormat"] == "{{alertname}}"
    assert annotation["tagKeys"] == "alertname,severity"
    assert annotation["step"] == "60s"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["definition"] == variable["query"]["query"], variable["name"]


def _datasources(node: Any) -> list[Any]:
    if isinstance(node, dict):
        found = [node["datasource"]] if "datasource" in node else []
        return found + [d for value in node.values() for d in _datasources(value)]
    if isinstance(node, list):
        return [d for value in node for d in _datasources(value)]
    return []


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_no_hard_coded_datasource(name: str) -> None:
    """Every datasource reference anywhere in the JSON is the `${datasource}` variable."""
    assert {str(d) for d in _datasources(DASHBOARDS[name])} == {str(DATASOURCE)}


@pytest.mark.parametrize("name", sorted(DASHBOARDS))
def test_every_variable_used_is_defined(name: str) -> None:
    dashboard = DASHBOARDS[name]
    defined = {variable["name"] for variable in dashboard["templating"]["list"]} | GRAFANA_VARIABLES
    for expression in dashboard_expressions(name, dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expression.expr))
        assert used <= defined, f"{expression.where}: undefined {used - defined}"


def test_quality_dashboards_filter_by_account_product_and_site() -> None:
    for name in ("zoom-qss-overview.json", "zoom-qss-network.json", "zoom-qss-sessions.json"):
        names = [variable["name"] for variable in DASHBOARDS[name]["templating"]["list"]]
        assert {"account", "product", "site"} <= set(names), name
    phone = [variable["name"] for variable in DASHBOARDS["zoom-qss-phone.json"]["templating"]["list"]]
    assert "account" in phone


@pytest.mark.parametrize("expression", _all_expressions(), ids=lambda e: e.where)
def test_metrics_and_labels_are_in_the_catalogue(expression: Expression) -> None:
    """Every metric is catalogued (or recorded by our rules, or made by Prometheus), with the labels used."""
    for metric in metric_names(expression.expr):
        assert _labels_of(metric) is not None, f"{metric} is not in docs/metrics.md nor a recording rule"
    for metric, labels in selectors(expression.expr):
        known = _labels_of(metric)
        assert known is not None, metric
        assert labels <= known, f"{metric} has no label {labels - known}"


def test_the_catalogue_parser_reads_every_table() -> None:
    families = catalogue()
    assert families["zoom_qss_media_latency_seconds"][0] == "histogram"
    assert {"site", "account", "le"} - families["zoom_qss_media_latency_seconds"][1] == {"le"}
    assert "site" not in families["zoom_qss_active_meetings"][1]
    assert families["zoom_qss_webhook_requests_total"] == ("counter", {"outcome"})
    assert len(families) >= 40


def test_the_promql_reader() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (site, le) (rate(zoom_qss_media_latency_seconds_bucket{site=~"$site"}[5m])))'
        ' / ignoring (quality) group_left sum(up{job="x"} offset 1w) or on () vector(0)'
    )
    assert metric_names(expr) == {"zoom_qss_media_latency_seconds_bucket", "up"}
    assert list(selectors(expr)) == [("zoom_qss_media_latency_seconds_bucket", {"site"}), ("up", {"job"})]
    assert _labels_of("not_a_metric") is None
    assert _labels_of("zoom_qss_media_latency_seconds_sum") is not None


def test_recording_rule_names_follow_level_metric_operation() -> None:
    for name, labels in RECORDED.items():
        assert re.fullmatch(r"[a-z_]+:zoom_qss_[a-z0-9_]+:[a-z0-9_]+", name), name
        assert "account" in labels, name


def test_alerts_have_severity_summary_description_and_a_runbook_section() -> None:
    runbook = (REPO / "docs" / "runbook.md").read_text()
    anchors = {heading.strip().lower() for heading in re.findall(r"^## (\w+)\s*$", runbook, re.MULTILINE)}
    alerts = [rule for rule in load_rules() if "alert" in rule]
    assert len(alerts) >= 10
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        page, anchor = annotations["runbook_url"].split("#")
        assert page == "docs/runbook.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/runbook.md has no section ## {rule['alert']}"
