"""Normalising comparison of dashboard JSON: what a change of the generator changed in what Grafana reads.

    python -m dashboards.compare --before REV   # the dashboards committed at git revision REV vs the code now

Key order is ignored, and so are the keys in EQUIVALENT: ones that one builder writes and another leaves
out, where Grafana reads the same value either way (each says why). Everything else must be equal: panel ids,
titles, types, grid positions and descriptions, every target's expression, legend, format and instant flag,
units, thresholds, overrides, transformations, options, variables, links and annotations. The report counts
what was compared and lists each remaining difference by its JSON path; exit 1 when there is one.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EQUIVALENT", "Equivalence", "counts", "differences", "main", "normalise", "read_revision"]


@dataclass(frozen=True, slots=True)
class Equivalence:
    """A key at `path` whose `value` Grafana reads the same as the key's absence; `*` matches one path segment,
    `[]` any list index. With `kind`, only inside an object whose `type` is `kind` (a panel or variable type)."""

    path: str
    value: Any
    why: str
    kind: str | None = None

    def holds(self, path: str, value: Any, kind: str | None) -> bool:
        return (
            self.kind in (None, kind) and _pattern(self.path).fullmatch(path) is not None and _same(value, self.value)
        )


@functools.cache
def _pattern(path: str) -> re.Pattern[str]:
    return re.compile(re.escape(path).replace(r"\*", "[^.]*"))


def _same(a: Any, b: Any) -> bool:
    return a == b and not list(differences(a, b))


_SCHEMA = "the Grafana 11.6 schema's default, which Grafana applies when the key is absent"
_LINK = "the SDK types data links as dashboard links; Grafana's data links read title, url and targetBlank only"
EQUIVALENT: tuple[Equivalence, ...] = (
    Equivalence("id", None, "no id: Grafana assigns one on import, as for null"),
    Equivalence("timepicker", {}, "Grafana's default time picker"),
    Equivalence("annotations.list[].builtIn", 0, _SCHEMA),
    Equivalence("annotations.list[].hide", False, _SCHEMA),
    Equivalence("panels[].transparent", False, _SCHEMA),
    Equivalence("panels[].repeatDirection", "h", _SCHEMA + " (only read when the panel repeats)"),
    Equivalence("panels[].options.legend.showLegend", True, "the time series panel's default", "timeseries"),
    Equivalence("panels[].options.wideLayout", True, _SCHEMA, "stat"),
    Equivalence("panels[].options.showPercentChange", False, _SCHEMA, "stat"),
    Equivalence("panels[].options.percentChangeColorMode", "standard", _SCHEMA, "stat"),
    Equivalence(
        "panels[].options.legend",
        {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": False},
        "the bar gauge's default legend: hidden (its options editor's defaults)",
        "bargauge",
    ),
    Equivalence("panels[].options.namePlacement", "auto", _SCHEMA, "bargauge"),
    Equivalence("panels[].options.sizing", "auto", _SCHEMA, "bargauge"),
    Equivalence("panels[].options.minVizWidth", 8, _SCHEMA, "bargauge"),
    Equivalence("panels[].options.minVizHeight", 16, _SCHEMA, "bargauge"),
    Equivalence("panels[].options.maxVizHeight", 300, _SCHEMA, "bargauge"),
    Equivalence("panels[].options.color.reverse", False, _SCHEMA, "heatmap"),
    Equivalence("panels[].options.exemplars", {"color": "rgba(255,0,255,0.7)"}, _SCHEMA, "heatmap"),
    Equivalence("panels[].options.filterValues", {"le": 1e-09}, _SCHEMA, "heatmap"),
    Equivalence("panels[].options.selectionMode", "x", _SCHEMA, "heatmap"),
    Equivalence("panels[].options.showValue", "auto", _SCHEMA, "heatmap"),
    Equivalence("panels[].options.footer", {"countRows": False, "reducer": [], "show": False}, _SCHEMA, "table"),
    Equivalence("panels[].options.frameIndex", 0, _SCHEMA, "table"),
    Equivalence("panels[].options.showTypeIcons", False, _SCHEMA, "table"),
    Equivalence("panels[].fieldConfig.defaults.links[].type", "link", _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].icon", "", _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].tooltip", "", _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].tags", [], _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].asDropdown", False, _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].includeVars", False, _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].keepTime", False, _LINK),
    Equivalence("panels[].fieldConfig.defaults.links[].targetBlank", False, _LINK + " (false is its default)"),
    Equivalence("templating.list[].allowCustomValue", True, _SCHEMA),
    Equivalence("templating.list[].auto", False, _SCHEMA + " (read by interval variables only)"),
    Equivalence("templating.list[].auto_count", 30, _SCHEMA + " (read by interval variables only)"),
    Equivalence("templating.list[].auto_min", "10s", _SCHEMA + " (read by interval variables only)"),
    Equivalence("templating.list[].current", {}, "no saved selection: Grafana selects the first value on load"),
    Equivalence("templating.list[].options", [], "filled when the dashboard loads", "datasource"),
    Equivalence("templating.list[].refresh", 1, "a data source variable is listed on every load", "datasource"),
)


def _equivalent(path: str, value: Any, kind: str | None) -> bool:
    return any(e.holds(path, value, kind) for e in EQUIVALENT)


def normalise(node: Any, path: str = "", kind: str | None = None) -> Any:
    """`node` without the keys that EQUIVALENT says Grafana reads the same when absent."""
    if isinstance(node, Mapping):
        kind = node["type"] if isinstance(node.get("type"), str) else kind
        out = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if not _equivalent(child, value, kind):
                out[key] = normalise(value, child, kind)
        return out
    if isinstance(node, list):
        return [normalise(value, f"{path}[]", kind) for value in node]
    return node


def differences(before: Any, after: Any, path: str = "") -> Iterator[str]:
    """Each difference between two normalised JSON values, as `path: before -> after`."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        for key in sorted(set(before) | set(after)):
            child = f"{path}.{key}" if path else key
            if key not in after:
                yield f"{child}: {_short(before[key])} -> (absent)"
            elif key not in before:
                yield f"{child}: (absent) -> {_short(after[key])}"
            else:
                yield from differences(before[key], after[key], child)
    elif isinstance(before, list) and isinstance(after, list):
        if len(before) != len(after):
            yield f"{path}: {len(before)} items -> {len(after)} items"
        for index, (old, new) in enumerate(zip(before, after, strict=False)):
            yield from differences(old, new, f"{path}[{index}]")
    elif before != after or _kind(before) != _kind(after):
        yield f"{path}: {_short(before)} -> {_short(after)}"


def _kind(value: Any) -> str:
    """JSON's types: true is not 1, but 0 and 0.0 are the same number."""
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else type(value).__name__


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 100 else text[:97] + "..."


def _panels(board: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def counts(board: Mapping[str, Any]) -> dict[str, int]:
    """How many of each thing the comparison covered in one dashboard (for the report)."""
    panels = list(_panels(board))
    widgets = [panel for panel in panels if panel["type"] != "row"]
    overrides = [o for p in widgets for o in p.get("fieldConfig", {}).get("overrides", [])]
    return {
        "rows": len(panels) - len(widgets),
        "panels": len(widgets),
        "targets": sum(len(panel.get("targets", [])) for panel in widgets),
        "units": sum(1 for p in widgets if "unit" in p.get("fieldConfig", {}).get("defaults", {}))
        + sum(1 for o in overrides for prop in o["properties"] if prop["id"] == "unit"),
        "threshold steps": sum(
            len(p["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", [])) for p in widgets
        )
        + sum(len(prop["value"]["steps"]) for o in overrides for prop in o["properties"] if prop["id"] == "thresholds"),
        "overrides": len(overrides),
        "data links": sum(len(p.get("fieldConfig", {}).get("defaults", {}).get("links", [])) for p in widgets),
        "transformations": sum(len(panel.get("transformations", [])) for panel in widgets),
        "variables": len(board.get("templating", {}).get("list", [])),
        "links": len(board.get("links", [])),
        "annotations": len(board.get("annotations", {}).get("list", [])),
    }


def read_revision(revision: str, name: str) -> dict[str, Any]:
    """dashboards/`name` as committed at git `revision`."""
    text = subprocess.run(
        ["git", "show", f"{revision}:dashboards/{name}"], check=True, capture_output=True, text=True
    ).stdout
    board: dict[str, Any] = json.loads(text)
    return board


def main(argv: list[str] | None = None) -> int:
    from dashboards.generate import DASHBOARDS  # the generator (and the SDK) only when run as a script

    parser = argparse.ArgumentParser(prog="python -m dashboards.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision whose committed dashboards are the baseline")
    args = parser.parse_args(argv)
    found = 0
    applied: Counter[int] = Counter()  # by index into EQUIVALENT (a rule's value may be a dict)
    for name, build in DASHBOARDS.items():
        before, after = read_revision(args.before, name), build()
        applied.update(_equivalent_keys(before) + _equivalent_keys(after))
        diffs = list(differences(normalise(before), normalise(after)))
        found += len(diffs)
        summary = ", ".join(f"{n} {what}" for what, n in counts(after).items())
        sys.stdout.write(f"{name}: {summary}: {'identical' if not diffs else f'{len(diffs)} differences'}\n")
        sys.stdout.writelines(f"  {diff}\n" for diff in diffs)
    if applied:
        sys.stdout.write("keys treated as equal to their absence (before + after):\n")
        for index, e in enumerate(EQUIVALENT):
            if applied[index]:
                where = f" ({e.kind})" if e.kind else ""
                sys.stdout.write(f"  {applied[index]:4d} x {e.path}{where} = {json.dumps(e.value)}: {e.why}\n")
    return 1 if found else 0


def _equivalent_keys(node: Any, path: str = "", kind: str | None = None) -> list[int]:
    """Which equivalence (index into EQUIVALENT) normalise() applies to each key it drops, for the report."""
    found: list[int] = []
    if isinstance(node, Mapping):
        kind = node["type"] if isinstance(node.get("type"), str) else kind
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            rule = next((i for i, e in enumerate(EQUIVALENT) if e.holds(child, value, kind)), None)
            if rule is not None:
                found.append(rule)
            else:
                found.extend(_equivalent_keys(value, child, kind))
    elif isinstance(node, list):
        for value in node:
            found.extend(_equivalent_keys(value, f"{path}[]", kind))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
