"""The committed dashboards and rule files are exactly what `python -m dashboards.generate` makes."""

from __future__ import annotations

import pytest

from dashboards import generate
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
