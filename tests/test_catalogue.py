"""docs/metrics.md and the exposed families match exactly, both ways (names, types, labels)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from qss_exporter.app import Agent, enrichment_labels
from qss_exporter.catalogue import DEFAULT_BUCKETS
from qss_exporter.config import config_from_mapping
from tests.conftest import base_config, merge

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
# zoom_qss_* and the standard process_* / python_* families (prometheus_client's collectors).
ROW = re.compile(r"^\| `((?:zoom_qss|process|python)_[a-z_]+)` \| (counter|gauge|histogram) \| ([^|]*)\|")
DETAIL_SECTION = "## Detail mode"  # families that exist only with detail.enabled
DETAIL = {"enabled": True, "hash_key": "catalogue-key", "worst": {"participants": 5}}


def documented() -> dict[str, tuple[str, str]]:
    return {name: (kind, labels) for name, (kind, labels, _) in _rows().items()}


def _rows() -> dict[str, tuple[str, str, bool]]:
    rows: dict[str, tuple[str, str, bool]] = {}
    detail = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            detail = line.startswith(DETAIL_SECTION)
        match = ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            assert name not in rows, f"{name} documented twice"
            rows[name] = (kind, labels.strip(), detail)
    return rows


def _plain(config_detail: dict[str, Any], family: str) -> list[str]:
    """The opted-in plain detail labels of a family, in their documented order."""
    plain = config_detail.get("plain", {})
    names = ["meeting_number", "topic"] + (["participant_name"] if family.startswith("zoom_qss_participant_") else [])
    return [name for name in names if plain.get(name)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"labels": {"network_type": False, "site": False}},
        {"labels": {"data_center": True, "client_os": True, "client_version": True}},
        {"detail": DETAIL},
        {"detail": DETAIL | {"plain": {"topic": True, "participant_name": True}}},
        {"detail": DETAIL | {"plain": {"meeting_number": True, "topic": True, "participant_name": True}}},
    ],
)
def test_catalogue_matches_exposed_families(overrides: dict[str, Any]) -> None:
    config = config_from_mapping(merge(base_config(), overrides))
    agent = Agent(config)
    enrichment = enrichment_labels(config)
    detail = overrides.get("detail", {})
    expected: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, (kind, text, detail_only) in _rows().items():
        if detail_only and not detail:
            continue
        base = [
            label.strip()
            for label in text.replace("+ *enrichment*", "").replace("+ *plain*", "").replace("`", "").split(",")
            if label.strip()
        ]
        extra = enrichment if "*enrichment*" in text else _plain(detail, name) if "*plain*" in text else []
        expected[name] = (kind, (*base, *extra))
    exposed = {family.name: (family.type, family.labelnames) for family in agent.store.families()}
    assert exposed == expected


def test_every_histogram_has_documented_default_buckets() -> None:
    histograms = {name for name, (kind, _) in documented().items() if kind == "histogram"}
    assert histograms == set(DEFAULT_BUCKETS)


# The `source` values of zoom_qss_events_total, each with the code path that produces it. The demo is not
# one: it sends real signed webhooks to the agent's own listener (ARCHITECTURE.md, `qss-exporter demo`),
# so its events are `webhook` events (tests/test_demo.py checks that on the running demo).
EVENT_SOURCES = {
    "webhook": "sources/webhook.py",
    "websocket": "sources/websocket.py",
    "poll": "sources/poller.py",
    "replay": "sources/replay.py",
}


def test_event_sources_are_the_ones_code_produces() -> None:
    row = next(line for line in DOC.read_text().splitlines() if line.startswith("| `zoom_qss_events_total`"))
    documented = re.findall(r"`([a-z]+)`", row.split("`source` is", 1)[1])
    assert set(documented) == set(EVENT_SOURCES)
    package = Path(__file__).resolve().parents[1] / "qss_exporter"
    for source, module in EVENT_SOURCES.items():
        assert f'"{source}"' in (package / module).read_text(), source
