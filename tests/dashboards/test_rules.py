"""`promtool check rules` is clean and `promtool test rules` covers every alert, firing and not firing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.dashboards.artefacts import RULE_FILES, load_rules, scale_durations

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yaml"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=False)


def test_promtool_check_rules_is_clean(promtool: str) -> None:
    result = _run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    result = _run(promtool, "test", "rules", *map(str, PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_cover_every_alert_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        document = yaml.safe_load(path.read_text())
        assert {Path(f).name for f in document["rule_files"]} <= {p.name for p in RULE_FILES}, path
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case["exp_alerts"] else quiet).add(case["alertname"])
                for alert in case["exp_alerts"]:
                    assert alert.get("exp_annotations"), f"{path.name}: {case['alertname']} without annotations"
    alerts = {rule["alert"] for rule in load_rules() if "alert" in rule}
    assert alerts - firing == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"


def test_the_time_compressed_copy_of_the_end_to_end_test_is_valid(promtool: str, tmp_path: Path) -> None:
    paths = []
    for source in RULE_FILES:
        path = tmp_path / source.name
        path.write_text(scale_durations(source.read_text(), 1 / 30))
        paths.append(str(path))
    result = _run(promtool, "check", "rules", *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    scaled = "\n".join(Path(p).read_text() for p in paths)
    for compressed in ("[10s]", "offset 20160s", "for: 10s", "interval: 2s"):
        assert compressed in scaled
    assert "[5m]" not in scaled
