"""dashboards/compare.py: the normalising comparison sees every change Grafana would see, and nothing else."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from dashboards import compare
from tests.dashboards.artefacts import load_dashboards

BOARD = load_dashboards()["zoom-qss-overview.json"]
TABLE = next(i for i, p in enumerate(BOARD["panels"]) if p["type"] == "table")
TIMESERIES = next(i for i, p in enumerate(BOARD["panels"]) if p["type"] == "timeseries")


def _diff(before: Any, after: Any) -> list[str]:
    return list(compare.differences(compare.normalise(before), compare.normalise(after)))


def _reordered(node: Any) -> Any:
    """The same JSON with every object's keys in reverse order."""
    if isinstance(node, dict):
        return {key: _reordered(node[key]) for key in reversed(list(node))}
    if isinstance(node, list):
        return [_reordered(value) for value in node]
    return node


def test_key_order_does_not_matter() -> None:
    after = _reordered(BOARD)
    assert json.dumps(after) != json.dumps(BOARD)
    assert _diff(BOARD, after) == []


def _set(path: list[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(board: dict[str, Any]) -> None:
        node: Any = board
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


# (what, change, the path reported)
CHANGES = [
    ("panel id", _set(["panels", TIMESERIES, "id"], 999), f"panels[{TIMESERIES}].id"),
    ("panel title", _set(["panels", TIMESERIES, "title"], "x"), f"panels[{TIMESERIES}].title"),
    ("panel type", _set(["panels", 0, "type"], "text"), "panels[0].type"),
    ("grid position", _set(["panels", TIMESERIES, "gridPos", "w"], 7), f"panels[{TIMESERIES}].gridPos.w"),
    ("description", _set(["panels", TIMESERIES, "description"], ""), f"panels[{TIMESERIES}].description"),
    ("expr", _set(["panels", TIMESERIES, "targets", 0, "expr"], "up"), f"panels[{TIMESERIES}].targets[0].expr"),
    (
        "legend",
        _set(["panels", TIMESERIES, "targets", 0, "legendFormat"], "{{x}}"),
        f"panels[{TIMESERIES}].targets[0].legendFormat",
    ),
    ("instant", _set(["panels", TABLE, "targets", 0, "instant"], False), f"panels[{TABLE}].targets[0].instant"),
    (
        "unit",
        _set(["panels", TIMESERIES, "fieldConfig", "defaults", "unit"], "ms"),
        f"panels[{TIMESERIES}].fieldConfig.defaults.unit",
    ),
    (
        "threshold",
        _set(["panels", TIMESERIES, "fieldConfig", "defaults", "thresholds", "steps", 1, "value"], 0.5),
        f"panels[{TIMESERIES}].fieldConfig.defaults.thresholds.steps[1].value",
    ),
    (
        "override",
        _set(["panels", TABLE, "fieldConfig", "overrides", 0, "properties", 0, "value"], "s"),
        f"panels[{TABLE}].fieldConfig.overrides[0].properties[0].value",
    ),
    (
        "data link",
        _set(["panels", TABLE, "fieldConfig", "defaults", "links", 0, "url"], "/d/x"),
        f"panels[{TABLE}].fieldConfig.defaults.links[0].url",
    ),
    ("variable", _set(["templating", "list", 1, "allValue"], ""), "templating.list[1].allValue"),
    ("dashboard link", _set(["links", 0, "keepTime"], False), "links[0].keepTime"),
    ("annotation", _set(["annotations", "list", 0, "expr"], "ALERTS"), "annotations.list[0].expr"),
    ("schema version", _set(["schemaVersion"], 39), "schemaVersion"),
]


@pytest.mark.parametrize(("what", "change", "path"), CHANGES, ids=[c[0] for c in CHANGES])
def test_every_kind_of_change_is_reported_by_its_path(
    what: str, change: Callable[[dict[str, Any]], None], path: str
) -> None:
    after = copy.deepcopy(BOARD)
    change(after)
    found = _diff(BOARD, after)
    assert [diff.split(":")[0] for diff in found] == [path], (what, found)


def test_a_removed_panel_or_key_is_reported() -> None:
    after = copy.deepcopy(BOARD)
    del after["panels"][-1]
    del after["templating"]["list"][0]["query"]
    found = _diff(BOARD, after)
    assert f"panels: {len(BOARD['panels'])} items -> {len(BOARD['panels']) - 1} items" in found
    assert 'templating.list[0].query: "prometheus" -> (absent)' in found


def test_an_equivalence_holds_only_for_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = compare.Equivalence("panels[].options.legend.showLegend", True, "Grafana's default")
    monkeypatch.setattr(compare, "EQUIVALENT", (rule,))
    legend: list[str | int] = ["panels", TIMESERIES, "options", "legend", "showLegend"]
    shown, hidden = copy.deepcopy(BOARD), copy.deepcopy(BOARD)
    _set(legend, True)(shown)
    _set(legend, False)(hidden)
    assert _diff(BOARD, shown) == []
    assert _diff(BOARD, hidden) == [f"panels[{TIMESERIES}].options.legend.showLegend: (absent) -> false"]


def test_a_panel_type_s_defaults_hold_for_that_type_only() -> None:
    hidden_legend = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": False}
    bars, lines = copy.deepcopy(BOARD), copy.deepcopy(BOARD)
    bargauge = next(i for i, p in enumerate(BOARD["panels"]) if p["type"] == "bargauge")
    _set(["panels", bargauge, "options", "legend"], hidden_legend)(bars)
    del bars["panels"][bargauge]["options"]["legend"]
    _set(["panels", TIMESERIES, "options", "legend"], hidden_legend)(lines)
    assert _diff(BOARD, bars) == []  # the bar gauge hides its legend by default
    assert [d.split(":")[0] for d in _diff(BOARD, lines)] == [
        f"panels[{TIMESERIES}].options.legend.{key}" for key in ("calcs", "displayMode", "showLegend")
    ]
    datasource, query = copy.deepcopy(BOARD), copy.deepcopy(BOARD)
    assert "refresh" not in BOARD["templating"]["list"][0]
    datasource["templating"]["list"][0]["refresh"] = 1
    del query["templating"]["list"][1]["refresh"]
    assert BOARD["templating"]["list"][0]["type"] == "datasource"
    assert _diff(BOARD, datasource) == []
    assert _diff(BOARD, query) == ["templating.list[1].refresh: 2 -> (absent)"]


def test_json_types_are_compared_not_only_values() -> None:
    assert _diff({"a": 1}, {"a": True}) == ["a: 1 -> true"]
    assert _diff({"a": [1]}, {"a": {"0": 1}}) == ['a: [1] -> {"0": 1}']
    assert _diff({"a": 0}, {"a": 0.0}) == []  # one JSON number


def test_counts_cover_the_dashboard() -> None:
    found = compare.counts(BOARD)
    assert found["panels"] == sum(1 for p in BOARD["panels"] if p["type"] != "row")
    assert found["targets"] >= found["panels"]
    assert found["units"] >= found["panels"]
    assert found["variables"] == len(BOARD["templating"]["list"])
    assert found["links"] == found["annotations"] == found["data links"] == 1


def test_reads_a_committed_revision() -> None:
    board = compare.read_revision("HEAD", "zoom-qss-overview.json")
    assert board["uid"] == "zoom-qss-overview"
