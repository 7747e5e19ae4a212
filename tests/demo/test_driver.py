"""The demo's configuration: the labels a default configuration gets, unless asked for more (`--labels`)."""

from __future__ import annotations

import argparse

import pytest

from qss_exporter.cli import _demo_labels, build_parser
from qss_exporter.config import config_from_mapping
from qss_exporter.core import enrichment_labels
from qss_exporter.demo.driver import demo_config
from qss_exporter.demo.simulator import default_accounts
from qss_exporter.enrichment import ENRICHMENT_LABELS


@pytest.mark.parametrize(
    ("given", "labels"),
    [
        ("default", ["network_type", "site"]),
        ("all", list(ENRICHMENT_LABELS)),
        ("site,client_os", ["site", "client_os"]),
    ],
)
def test_the_demo_runs_on_the_default_labels_unless_asked_for_more(given: str, labels: list[str]) -> None:
    args = build_parser().parse_args(["demo", "--labels", given])
    mapping, _ = demo_config(default_accounts(), "127.0.0.1:0", "127.0.0.1:0", 60.0, args.labels)
    assert enrichment_labels(config_from_mapping(mapping)) == labels


def test_the_demo_without_labels_gets_what_a_configuration_without_a_labels_section_gets() -> None:
    mapping, _ = demo_config(default_accounts(), "127.0.0.1:0", "127.0.0.1:0", 60.0)
    assert "labels" not in mapping
    assert build_parser().parse_args(["demo"]).labels is None


@pytest.mark.parametrize("given", ["", "sites", "all,site", "network_type,ip"])
def test_an_unknown_label_is_refused(given: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected default, all or some of network_type"):
        _demo_labels(given)
