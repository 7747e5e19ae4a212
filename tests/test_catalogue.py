"""docs/metrics.md and the exposed families match exactly, both ways (names, types, labels)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qss_exporter.app import Agent, enrichment_labels
from qss_exporter.catalogue import DEFAULT_BUCKETS
from qss_exporter.config import config_from_mapping
from tests.conftest import base_config, merge

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
ROW = re.compile(r"^\| `(zoom_qss_[a-z_]+)` \| (counter|gauge|histogram) \| ([^|]*)\|")


def documented() -> dict[str, tuple[str, str]]:
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            assert name not in rows, f"{name} documented twice"
            rows[name] = (kind, labels.strip())
    return rows


@pytest.mark.parametrize(
    "labels",
    [{}, {"network_type": False, "site": False}, {"data_center": True, "client_os": True, "client_version": True}],
)
def test_catalogue_matches_exposed_families(labels: dict[str, bool]) -> None:
    config = config_from_mapping(merge(base_config(), {"labels": labels}))
    agent = Agent(config)
    enrichment = enrichment_labels(config)
    expected: dict[str, tuple[str, tuple[str, ...]]] = {}
    for name, (kind, text) in documented().items():
        base = [
            label.strip() for label in text.replace("+ *enrichment*", "").replace("`", "").split(",") if label.strip()
        ]
        extra = enrichment if "*enrichment*" in text else []
        expected[name] = (kind, (*base, *extra))
    exposed = {family.name: (family.type, family.labelnames) for family in agent.store.families()}
    assert exposed == expected


def test_every_histogram_has_documented_default_buckets() -> None:
    histograms = {name for name, (kind, _) in documented().items() if kind == "histogram"}
    assert histograms == set(DEFAULT_BUCKETS)
