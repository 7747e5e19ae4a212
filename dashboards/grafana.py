"""Our conventions for Grafana dashboards, on Grafana's typed SDK (grafana-foundation-sdk, Grafana 11.6 schemas).

The SDK's builders write the JSON; this module holds only what all our dashboards share: every panel and query
points at the `${datasource}` template variable (no data source UID is ever written), thresholds are
(value, colour) steps, a row's panels flow left to right with the row's height, `dashboard()` numbers the
panels in order and links each dashboard to its siblings by tag. `_beyond_the_sdk()` adds the few keys the
SDK's schema has no field for (docs/dashboards.md, "Generated with Grafana's SDK").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self, TypeVar

from grafana_foundation_sdk.builders import bargauge as sdk_bargauge
from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk
from grafana_foundation_sdk.builders import heatmap as sdk_heatmap
from grafana_foundation_sdk.builders import prometheus as sdk_prometheus
from grafana_foundation_sdk.builders import stat as sdk_stat
from grafana_foundation_sdk.builders import table as sdk_table
from grafana_foundation_sdk.builders import timeseries as sdk_timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import heatmap as heatmap_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat, QueryEditorMode

from dashboards.guidance import Threshold

__all__ = [
    "JSON",
    "SCHEMA_VERSION",
    "Column",
    "Panel",
    "Query",
    "Row",
    "Steps",
    "Variable",
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
Panel = Builder[model.Panel]
Variable = Builder[model.VariableModel]
Steps = list[tuple[float | None, str]]

SCHEMA_VERSION = model.Dashboard().schema_version  # the SDK's Grafana version's; docs/dashboards.md says which
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAG = "zoom-qss"
ALL = model.VariableOption(selected=True, text=["All"], value=["$__all"])
# Prometheus annotation fields: Grafana's Prometheus data source reads them, the SDK's AnnotationQuery has none.
ALERTS_ANNOTATION: JSON = {
    "step": "60s",
    "tagKeys": "alertname,severity",
    "textFormat": "{{alertname}} {{site}}{{data_center}}",
    "titleFormat": "{{alertname}}",
    "useValueForTime": False,
}


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    format: PromQueryFormat = PromQueryFormat.TIME_SERIES


@dataclass(frozen=True, slots=True)
class Column:
    """One value column of a table: an instant query joined to the others on their labels."""

    expr: str
    name: str
    unit: str
    steps: Steps | None = None


@dataclass(slots=True)
class Row:
    """A titled row of panels; each panel is (panel, width out of 24)."""

    title: str
    panels: list[tuple[Panel, int]]
    height: int = 8


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


def _thresholds(steps: Steps | None) -> sdk.ThresholdsConfig:
    return (
        sdk.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps or [(None, "green")]])
    )


def _target(index: int, query: Query) -> sdk_prometheus.Dataquery:
    target = (
        sdk_prometheus.Dataquery()
        .datasource(DATASOURCE)
        .editor_mode(QueryEditorMode.CODE)
        .expr(query.expr)
        .format(query.format)
        .legend_format(query.legend or "__auto")
        .ref_id(chr(ord("A") + index))
    )
    return target.instant() if query.instant else target.range()


class _PanelBuilder(Protocol):
    """What every SDK panel builder has (they share no base class)."""

    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def datasource(self, datasource: model.DataSourceRef) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def with_target(self, target: Builder[Dataquery]) -> Self: ...


P = TypeVar("P", bound=_PanelBuilder)


def _panel(panel: P, title: str, description: str, unit: str, queries: Sequence[Query]) -> P:
    panel = panel.title(title).description(description).datasource(DATASOURCE).unit(unit)
    for index, query in enumerate(queries):
        panel = panel.with_target(_target(index, query))
    return panel


def _color(mode: model.FieldColorModeId) -> sdk.FieldColor:
    return sdk.FieldColor().mode(mode)


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    steps: Steps | None = None,
    stack: Literal["none", "normal", "percent"] = "none",
    min_value: float | None = 0,
    max_value: float | None = None,
    colors: dict[str, str] | None = None,
) -> sdk_timeseries.Panel:
    """A time series; `steps` are drawn as dashed threshold lines, `stack` is none | normal | percent;
    `colors` fixes the colour of series by their display name."""
    panel = (
        _panel(sdk_timeseries.Panel(), title, description, unit, queries)
        .color_scheme(_color(model.FieldColorModeId.PALETTE_CLASSIC))
        .thresholds(_thresholds(steps))
        .draw_style(common.GraphDrawStyle.LINE)
        .fill_opacity(60 if stack != "none" else 10)
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .stacking(sdk_common.StackingConfig().group("A").mode(common.StackingMode(stack)))
        .thresholds_style(
            sdk_common.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED if steps else common.GraphThresholdsStyleMode.OFF
            )
        )
        .legend(
            sdk_common.VizLegendOptions()
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
        )
        .tooltip(sdk_common.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    for name, color in (colors or {}).items():
        fixed = model.FieldColor(mode=model.FieldColorModeId.FIXED, fixed_color=color)
        panel = panel.override_by_name(name, [model.DynamicConfigValue(id_val="color", value=fixed)])
    return panel


def _last_value() -> sdk_common.ReduceDataOptions:
    return sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    steps: Steps | None = None,
    decimals: int | None = None,
) -> sdk_stat.Panel:
    """A single number with a sparkline, coloured by `steps`."""
    panel = (
        _panel(sdk_stat.Panel(), title, description, unit, [query])
        .color_scheme(_color(model.FieldColorModeId.THRESHOLDS))
        .thresholds(_thresholds(steps))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE if query.instant else common.BigValueGraphMode.AREA)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(_last_value())
        .text_mode(common.BigValueTextMode.AUTO)
    )
    return panel if decimals is None else panel.decimals(decimals)


def bargauge(
    title: str, description: str, unit: str, query: Query, *, steps: Steps | None = None
) -> sdk_bargauge.Panel:
    """Horizontal bars, one per series of an instant query (sort it in PromQL)."""
    return (
        _panel(sdk_bargauge.Panel(), title, description, unit, [query])
        .color_scheme(_color(model.FieldColorModeId.THRESHOLDS))
        .thresholds(_thresholds(steps))
        .min(0)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .orientation(common.VizOrientation.HORIZONTAL)
        .reduce_options(_last_value())
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
    )


def heatmap(title: str, description: str, unit: str, expr: str) -> sdk_heatmap.Panel:
    """A heatmap of pre-bucketed Prometheus histogram data (`sum by (le) (...)`), buckets on the y axis."""
    query = Query(expr, "{{le}}", format=PromQueryFormat.HEATMAP)
    return (
        _panel(sdk_heatmap.Panel(), title, description, unit, [query])
        .scale_distribution(sdk_common.ScaleDistributionConfig().type(common.ScaleDistribution.LINEAR))
        .calculate(False)
        .cell_gap(1)
        .cell_values(sdk_heatmap.CellValues().unit("short"))
        .color(
            sdk_heatmap.HeatmapColorOptions()
            .exponent(0.5)
            .fill("dark-orange")
            .mode(heatmap_model.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .steps(64)
        )
        .show_legend()
        .rows_frame(sdk_heatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.AUTO))
        .mode(common.TooltipDisplayMode.SINGLE)
        .show_color_scale(False)
        .show_y_histogram()
        .y_axis(sdk_heatmap.YAxisConfig().axis_placement(common.AxisPlacement.LEFT).unit(unit))
    )


def table(
    title: str, description: str, columns: Sequence[Column], *, join: str, links: Sequence[tuple[str, str]]
) -> sdk_table.Panel:
    """Instant queries side by side, one row per value of the `join` label, the first column sorted;
    `links` are (title, url) data links on every cell."""
    queries = [Query(column.expr, instant=True, format=PromQueryFormat.TABLE) for column in columns]
    panel = _panel(sdk_table.Panel(), title, description, "short", queries).data_links(
        [sdk.DashboardLink(text).url(url) for text, url in links]
    )
    rename = {}
    for index, column in enumerate(columns):
        rename[f"Value #{chr(ord('A') + index)}"] = column.name
        properties = [model.DynamicConfigValue(id_val="unit", value=column.unit)]
        if column.steps:
            properties.append(model.DynamicConfigValue(id_val="thresholds", value=_thresholds(column.steps).build()))
            properties.append(
                model.DynamicConfigValue(id_val="custom.cellOptions", value=common.TableColorTextCellOptions())
            )
        panel = panel.override_by_name(column.name, properties)
    organize = {"excludeByName": {"Time": True}, "indexByName": {join: 0}, "renameByName": rename}
    return (
        panel.with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(model.DataTransformerConfig(id_val="organize", options=organize))
        .cell_height(common.TableCellHeight.SM)
        .show_header(True)
        .sort_by([sdk_common.TableSortByFieldState().display_name(columns[0].name).desc(True)])
    )


def query_variable(name: str, label: str, metric: str, *, description: str, multi: bool = True) -> sdk.QueryVariable:
    """A variable over the values of label `name` on `metric`; multi-value ones have All, matching every series."""
    definition = f"label_values({metric}, {name})"
    variable = (
        sdk.QueryVariable(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query({"qryType": 1, "query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
        .hide(model.VariableHide.DONT_HIDE)
        .options([])
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .regex("")
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(multi)
        .include_all(multi)
    )
    return variable.current(ALL).all_value(".*") if multi else variable


def custom_variable(name: str, label: str, values: Sequence[str], *, description: str) -> sdk.CustomVariable:
    """A multi-value variable over a fixed list (an enum of the catalogue); All matches every series."""
    return (
        sdk.CustomVariable(name)
        .label(label)
        .description(description)
        .values(",".join(values))
        .hide(model.VariableHide.DONT_HIDE)
        .options([])
        .current(ALL)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def _datasource_variable() -> sdk.DatasourceVariable:
    return (
        sdk.DatasourceVariable("datasource")
        .label("Data source")
        .description("The Prometheus (or Mimir, Thanos ...) data source that scrapes qss-exporter.")
        .type("prometheus")
        .hide(model.VariableHide.DONT_HIDE)
        .regex("")
        .multi(False)
        .include_all(False)
    )


def dashboard(uid: str, title: str, description: str, variables: Sequence[Variable], rows: Sequence[Row]) -> JSON:
    """A complete dashboard: `${datasource}` first, then `variables`; linked to its siblings by tag."""
    builder = (
        sdk.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .editable()
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .fiscal_year_start_month(0)
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .version(1)
        .variables([_datasource_variable(), *variables])
        .annotation(
            sdk.AnnotationQuery()
            .name("qss-exporter alerts")
            .datasource(DATASOURCE)
            .enable(True)
            .icon_color("red")
            .expr('ALERTS{alertstate="firing", alertname=~"Zoom.*|QssExporter.*"}')
        )
        .link(
            sdk.DashboardLink("Zoom QSS")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(False)
            .icon("external link")
            .include_vars(True)
            .keep_time(True)
            .target_blank(False)
            .tooltip("")
            .url("")
        )
    )
    for row in rows:  # the SDK lays each row's panels out left to right, wrapping at 24 columns
        builder = builder.with_row(sdk.Row(row.title))
        for panel, width in row.panels:
            builder = builder.with_panel(_Sized(panel, width, row.height))
    board = builder.build()
    for number, built in enumerate(board.panels or [], start=1):
        built.id_val = number
    return _beyond_the_sdk(json.loads(json.dumps(board, cls=JSONEncoder)))


class _Sized(Builder[model.Panel]):
    """A panel of the given grid size (the row decides its height)."""

    def __init__(self, panel: Panel, width: int, height: int) -> None:
        self._panel, self._width, self._height = panel, width, height

    def build(self) -> model.Panel:
        built = self._panel.build()
        built.grid_pos = model.GridPos(h=self._height, w=self._width)
        return built


def _beyond_the_sdk(board: JSON) -> JSON:
    """What the SDK's schema for Grafana 11.6 cannot express (docs/dashboards.md lists it)."""
    for annotation in board["annotations"]["list"]:
        annotation.update(ALERTS_ANNOTATION)
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":  # the query's summary in Grafana's variable list
            variable["definition"] = variable["query"]["query"]
    return board
