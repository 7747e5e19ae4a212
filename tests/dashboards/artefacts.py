"""Reading the committed dashboards and rule files the way Grafana and Prometheus would, for the tests.

Also a small PromQL reader (metric names and selector labels, by regular expressions; enough for the
expressions we write) and the metric catalogue of docs/metrics.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.process import REPO

__all__ = [
    "DASHBOARDS",
    "RULE_FILES",
    "Expression",
    "catalogue",
    "dashboard_expressions",
    "load_dashboards",
    "load_rules",
    "metric_names",
    "panels",
    "scale_durations",
    "selectors",
    "substitute",
    "variable_queries",
]

DASHBOARDS = REPO / "dashboards"
RULE_FILES = sorted((DASHBOARDS / "rules").glob("*.rules.yaml"))
METRICS_DOC = REPO / "docs" / "metrics.md"

# What the template variables become in tests: All (`.*`), and Grafana's own interval for a 15 s scrape.
VARIABLES = {
    "__rate_interval": "1m",
    "account": ".*",
    "product": ".*",
    "site": ".*",
    "media": ".*",
    "leg": ".*",
    "direction": ".*",
    "instance": ".*",
    "job": "qss-exporter",
}


@dataclass(frozen=True, slots=True)
class Expression:
    """A PromQL expression and where it comes from (for messages)."""

    where: str
    expr: str


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions(name: str, dashboard: dict[str, Any]) -> Iterator[Expression]:
    """The PromQL of every panel target and annotation, template variables not yet substituted."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield Expression(f"{name} / {panel['title']} / {target['refId']}", target["expr"])
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if "expr" in annotation:
            yield Expression(f"{name} / annotation {annotation['name']}", annotation["expr"])


_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")


def variable_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(variable name, series selector, label) of every `label_values(...)` query variable."""
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["definition"])
            assert match, f"variable {variable['name']}: not label_values(selector, label): {variable['definition']}"
            yield variable["name"], match.group(1), match.group(2)


def substitute(expr: str, values: dict[str, str] = VARIABLES) -> str:
    """Replace $name and ${name} as Grafana does; an unknown variable fails loudly."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise AssertionError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, expr)


def load_rules(paths: list[Path] = RULE_FILES) -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of the rule files, each with its group's name under `group`."""
    rules: list[dict[str, Any]] = []
    for path in paths:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend({**rule, "group": group["name"]} for rule in group["rules"])
    return rules


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def _scaled(duration: str, factor: float) -> str:
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _DURATION.findall(duration)) * factor
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def scale_durations(text: str, factor: float) -> str:
    """A rule file with every duration (range, offset, `for:`, group interval) multiplied by `factor`."""
    text = re.sub(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)\]", lambda m: f"[{_scaled(m.group(1), factor)}]", text)
    text = re.sub(r"offset ((?:\d+(?:ms|s|m|h|d|w|y))+)", lambda m: f"offset {_scaled(m.group(1), factor)}", text)
    return re.sub(
        r"^(\s*(?:for|interval): )((?:\d+(?:ms|s|m|h|d|w|y))+)$",
        lambda m: f"{m.group(1)}{_scaled(m.group(2), factor)}",
        text,
        flags=re.MULTILINE,
    )


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "inf", "nan",
}  # fmt: skip
_IDENTIFIER = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])")


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads (not functions, keywords or label names)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\S+", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group(1)
        following = text[match.end() :].lstrip()
        if name in _KEYWORDS or following.startswith("("):
            continue
        names.add(name)
    return names


_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """(metric name, label names matched) of every `metric{...}` selector in an expression."""
    for match in _SELECTOR.finditer(_STRING.sub(lambda m: m.group(0).replace("{", "(").replace("}", ")"), expr)):
        yield match.group(1), set(_MATCHER.findall(_STRING.sub('""', match.group(2))))


_ROW = re.compile(r"^\| `(zoom_qss_[a-z_]+)` \| (counter|gauge|histogram) \| ([^|]*)\|")
ENRICHMENT = {"network_type", "site", "data_center", "client_os", "client_version"}


def catalogue(path: Path = METRICS_DOC) -> dict[str, tuple[str, set[str]]]:
    """docs/metrics.md's tables: family name -> (type, label names, enrichment labels included when listed)."""
    families = {}
    for line in path.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, text = match.groups()
            names = {
                label.strip().strip("`")
                for label in text.replace("+ *enrichment*", "").replace("+ *plain*", "").split(",")
                if label.strip()
            }
            if "*enrichment*" in text:
                names |= ENRICHMENT
            if "*plain*" in text:  # detail mode's opted-in plain labels
                names |= {"meeting_number", "topic", "participant_name"}
            families[name] = (kind, names)
    return families
