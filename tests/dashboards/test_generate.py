"""The committed dashboards and rule files are exactly what `python -m dashboards.generate` makes."""

from __future__ import annotations

import importlib.metadata
import tomllib

import pytest
import yaml

from dashboards import generate
from dashboards import grafana as grafana_sdk
from tests.process import REPO


def test_committed_files_match_the_generator() -> None:
    stale = [
        str(path.relative_to(REPO))
        for path, text in generate.artefacts().items()
        if not path.exists() or path.read_text() != text
    ]
    assert stale == [], "out of date; run `python -m dashboards.generate` and commit the result"


def test_every_dashboard_and_rule_file_on_disk_is_generated() -> None:
    generated = set(generate.artefacts())
    on_disk = set(generate.ROOT.glob("*.json")) | set(generate.ROOT.glob("rules/*"))
    assert on_disk == generated


def test_check_mode_reports_drift(capsys: pytest.CaptureFixture[str]) -> None:
    assert generate.main(["--check"]) == 0
    assert generate.main(["--check", "--runbook", "https://docs.example.org/runbook"]) == 1
    assert "out of date" in capsys.readouterr().err


def _grafana_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def test_one_grafana_version_for_the_sdk_the_dashboards_compose_and_the_docs() -> None:
    """The SDK release is Grafana's (`<build>!<grafana version>`); what it generates, what Compose runs and
    what the docs promise are that version."""
    pinned = next(
        requirement.split("==")[1]
        for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"][
            "test"
        ]
        if requirement.startswith("grafana-foundation-sdk==")
    )
    assert importlib.metadata.version("grafana-foundation-sdk") == pinned, "reinstall: pip install -e '.[test]'"
    grafana = _grafana_minor(pinned.split("!")[1])
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text())
    image = compose["services"]["grafana"]["image"]
    assert image.startswith(f"grafana/grafana:{grafana}."), image
    docs = (REPO / "docs" / "dashboards.md").read_text()
    assert f"Grafana {grafana}" in docs
    assert f"schemaVersion {grafana_sdk.SCHEMA_VERSION}" in docs
    for build in generate.DASHBOARDS.values():
        assert build()["schemaVersion"] == grafana_sdk.SCHEMA_VERSION
