"""Builders for Grafana dashboard JSON (the classic model, schemaVersion 41): panels, variables, layout.

Only what the bundled dashboards use. Every panel and query points at the `${datasource}` template
variable; no datasource UID is ever written. Panels get their ids and grid positions from `dashboard()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.guidance import Threshold

__all__ = [
    "DATASOURCE",
    "JSON",
    "Column",
    "Query",
    "Row",
    "Steps",
    "bargauge",
    "custom_variable",
    "dashboard",
    "heatmap",
    "higher_is_worse",
    "lower_is_worse",
    "query_variable",
    "stat",
    "table",
    "timeseries",
]

JSON = dict[str, Any]
SCHEMA_VERSION = 41
DATASOURCE: JSON = {"type": "prometheus", "uid": "${datasource}"}
TAG = "zoom-qss"

Steps = list[tuple[float | None, str]]


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"


@dataclass(frozen=True, slots=True)
class Column:
    """One value column of a table: an instant query joined to the others on their labels."""

    expr: str
    name: str
    unit: str
    steps: Steps | None = None


@dataclass(slots=True)
class Row:
    """A titled row of panels; each panel is (panel JSON, width out of 24)."""

    title: str
    panels: list[tuple[JSON, int]]
    height: int = 8
    collapsed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def higher_is_worse(threshold: Threshold, warn: float | None = None) -> Steps:
    """Green below the guidance, red at or above it (orange from `warn` when given)."""
    steps: Steps = [(None, "green")]
    if warn is not None:
        steps.append((warn, "orange"))
    steps.append((threshold.value, "red"))
    return steps


def lower_is_worse(threshold: Threshold) -> Steps:
    """Red below the guidance, green at or above it."""
    return [(None, "red"), (threshold.value, "green")]


def _thresholds(steps: Steps | None) -> JSON:
    steps = steps or [(None, "green")]
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


def _targets(queries: Sequence[Query]) -> list[JSON]:
    targets = []
    for index, query in enumerate(queries):
        targets.append(
            {
                "datasource": DATASOURCE,
                "editorMode": "code",
                "expr": query.expr,
                "format": query.format,
                "instant": query.instant,
                "legendFormat": query.legend or "__auto",
                "range": not query.instant,
                "refId": chr(ord("A") + index),
            }
        )
    return targets


def _panel(kind: str, title: str, description: str, unit: str, queries: Sequence[Query]) -> JSON:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    steps: Steps | None = None,
    stack: str = "none",
    min_value: float | None = 0,
    max_value: float | None = None,
    colors: dict[str, str] | None = None,
) -> JSON:
    """A time series; `steps` are drawn as dashed threshold lines, `stack` is none | normal | percent;
    `colors` fixes the colour of series by their display name."""
    panel = _panel("timeseries", title, description, unit, queries)
    panel["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "color", "value": {"fixedColor": color, "mode": "fixed"}}],
        }
        for name, color in (colors or {}).items()
    ]
    defaults = panel["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "palette-classic"}
    defaults["thresholds"] = _thresholds(steps)
    defaults["custom"] = {
        "drawStyle": "line",
        "fillOpacity": 60 if stack != "none" else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": stack},
        "thresholdsStyle": {"mode": "dashed" if steps else "off"},
    }
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    panel["options"] = {
        "legend": {"calcs": ["mean", "max", "lastNotNull"], "displayMode": "table", "placement": "bottom"},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    steps: Steps | None = None,
    decimals: int | None = None,
) -> JSON:
    """A single number with a sparkline, coloured by `steps`."""
    panel = _panel("stat", title, description, unit, [query])
    defaults = panel["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "thresholds"}
    defaults["thresholds"] = _thresholds(steps)
    if decimals is not None:
        defaults["decimals"] = decimals
    panel["options"] = {
        "colorMode": "value",
        "graphMode": "none" if query.instant else "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "textMode": "auto",
    }
    return panel


def bargauge(title: str, description: str, unit: str, query: Query, *, steps: Steps | None = None) -> JSON:
    """Horizontal bars, one per series of an instant query (sort it in PromQL)."""
    panel = _panel("bargauge", title, description, unit, [query])
    defaults = panel["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "thresholds"}
    defaults["thresholds"] = _thresholds(steps)
    defaults["min"] = 0
    panel["options"] = {
        "displayMode": "gradient",
        "orientation": "horizontal",
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "showUnfilled": True,
        "valueMode": "color",
    }
    return panel


def heatmap(title: str, description: str, unit: str, expr: str) -> JSON:
    """A heatmap of pre-bucketed Prometheus histogram data (`sum by (le) (...)`), buckets on the y axis."""
    panel = _panel("heatmap", title, description, unit, [Query(expr, "{{le}}", format="heatmap")])
    panel["fieldConfig"]["defaults"]["custom"] = {"scaleDistribution": {"type": "linear"}}
    panel["options"] = {
        "calculate": False,
        "cellGap": 1,
        "cellValues": {"unit": "short"},
        "color": {"exponent": 0.5, "fill": "dark-orange", "mode": "scheme", "scheme": "Oranges", "steps": 64},
        "legend": {"show": True},
        "rowsFrame": {"layout": "auto"},
        "tooltip": {"mode": "single", "showColorScale": False, "yHistogram": True},
        "yAxis": {"axisPlacement": "left", "unit": unit},
    }
    return panel


def table(title: str, description: str, columns: Sequence[Column], *, join: str, links: list[JSON]) -> JSON:
    """Instant queries side by side, one row per value of the `join` label, the first column sorted."""
    queries = [Query(column.expr, instant=True, format="table") for column in columns]
    panel = _panel("table", title, description, "short", queries)
    panel["fieldConfig"]["defaults"]["links"] = links
    overrides = []
    rename = {}
    for index, column in enumerate(columns):
        field_name = f"Value #{chr(ord('A') + index)}"
        rename[field_name] = column.name
        properties: list[JSON] = [{"id": "unit", "value": column.unit}]
        if column.steps:
            properties.append({"id": "thresholds", "value": _thresholds(column.steps)})
            properties.append({"id": "custom.cellOptions", "value": {"type": "color-text"}})
        overrides.append({"matcher": {"id": "byName", "options": column.name}, "properties": properties})
    panel["fieldConfig"]["overrides"] = overrides
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True}, "indexByName": {join: 0}, "renameByName": rename},
        },
    ]
    panel["options"] = {
        "cellHeight": "sm",
        "showHeader": True,
        "sortBy": [{"desc": True, "displayName": columns[0].name}],
    }
    return panel


def query_variable(name: str, label: str, metric: str, *, description: str) -> JSON:
    """A multi-value variable over the values of label `name` on `metric`; All matches every series."""
    definition = f"label_values({metric}, {name})"
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "definition": definition,
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


def custom_variable(name: str, label: str, values: Sequence[str], *, description: str) -> JSON:
    """A multi-value variable over a fixed list (an enum of the catalogue); All matches every series."""
    return {
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "description": description,
        "hide": 0,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": ",".join(values),
        "skipUrlSync": False,
        "type": "custom",
    }


def _datasource_variable() -> JSON:
    return {
        "current": {},
        "description": "The Prometheus (or Mimir, Thanos ...) data source that scrapes qss-exporter.",
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
        "type": "datasource",
    }


def _layout(rows: Sequence[Row]) -> list[JSON]:
    panels: list[JSON] = []
    y = 0
    next_id = 1
    for row in rows:
        panels.append(
            {
                "collapsed": row.collapsed,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
                "title": row.title,
                "type": "row",
            }
        )
        next_id += 1
        y += 1
        x = 0
        for panel, width in row.panels:
            if x + width > 24:
                x = 0
                y += row.height
            panels.append({"id": next_id, "gridPos": {"h": row.height, "w": width, "x": x, "y": y}, **panel})
            next_id += 1
            x += width
        y += row.height
    return panels


def dashboard(uid: str, title: str, description: str, variables: Sequence[JSON], rows: Sequence[Row]) -> JSON:
    """A complete dashboard: `${datasource}` first, then `variables`; linked to its siblings by tag."""
    return {
        "annotations": {
            "list": [
                {
                    "datasource": DATASOURCE,
                    "enable": True,
                    "expr": 'ALERTS{alertstate="firing", alertname=~"Zoom.*|QssExporter.*"}',
                    "iconColor": "red",
                    "name": "qss-exporter alerts",
                    "step": "60s",
                    "tagKeys": "alertname,severity",
                    "textFormat": "{{alertname}} {{site}}{{data_center}}",
                    "titleFormat": "{{alertname}}",
                    "useValueForTime": False,
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [TAG],
                "targetBlank": False,
                "title": "Zoom QSS",
                "tooltip": "",
                "type": "dashboards",
                "url": "",
            }
        ],
        "panels": _layout(rows),
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": [_datasource_variable(), *variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
    }
