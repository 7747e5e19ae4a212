"""Imports run one way along the pipeline (STYLE.md 2.2): sources -> zoom -> pipeline -> store -> outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "qss_exporter"

# module prefix -> internal modules it must not import (prefix match)
FORBIDDEN = {
    "qss_exporter.zoom": [
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.catalogue",
        "qss_exporter.app",
        "qss_exporter.cli",
        "qss_exporter.config",
    ],
    "qss_exporter.store": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.catalogue",
        "qss_exporter.config",
        "qss_exporter.app",
    ],
    "qss_exporter.outputs": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.pipeline",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    "qss_exporter.pipeline": ["qss_exporter.sources", "qss_exporter.outputs", "qss_exporter.app", "qss_exporter.cli"],
    "qss_exporter.catalogue": ["qss_exporter.zoom", "qss_exporter.sources", "qss_exporter.outputs", "qss_exporter.app"],
    "qss_exporter.dedupe": ["qss_exporter."],
    "qss_exporter.distinct": ["qss_exporter."],
    "qss_exporter.seconds": ["qss_exporter."],
    "qss_exporter.process_tuning": ["qss_exporter."],
    "qss_exporter.redaction": ["qss_exporter."],
    "qss_exporter.tenancy": ["qss_exporter."],
    "qss_exporter.activity": ["qss_exporter.zoom", "qss_exporter.sources", "qss_exporter.outputs", "qss_exporter.app"],
    "qss_exporter.enrichment": [
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.app",
        "qss_exporter.store",
    ],
    "qss_exporter.sources": ["qss_exporter.outputs", "qss_exporter.app", "qss_exporter.cli"],
    "qss_exporter.config": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.app",
    ],
    "qss_exporter.app": ["qss_exporter.cli"],
    "qss_exporter.validation": [
        "qss_exporter.sources",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    "qss_exporter.runtime": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.catalogue",
        "qss_exporter.config",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    # The listeners' transport side knows HTTP, not Zoom, the pipeline or the metrics.
    "qss_exporter.server": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.catalogue",
        "qss_exporter.outputs",
        "qss_exporter.config",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    "qss_exporter.identity": ["qss_exporter."],
    # Reload compares configurations and records its outcome; app.py hands it the loader and what to apply.
    "qss_exporter.reload": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.catalogue",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    # The store and what records into it, for one configuration: no listener, no source, no I/O.
    "qss_exporter.core": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.server",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    # The series budget reads families and closed value sets; it records nothing and serves nothing.
    "qss_exporter.budget": [
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    "qss_exporter.state": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.catalogue",
        "qss_exporter.config",
        "qss_exporter.app",
    ],
    # Redis and the leader lease know nothing of Zoom or the pipeline; leadership.py starts and stops
    # sources it is handed (app.py wires them) and imports none.
    "qss_exporter.redis_client": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.app",
    ],
    "qss_exporter.lease": ["qss_exporter."],
    "qss_exporter.leadership": [
        "qss_exporter.zoom",
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.config",
        "qss_exporter.app",
    ],
    # The demo's simulated organisation is not a source of real data: it speaks Zoom's wire format (signs
    # webhooks) and POSTs them to the agent's listener like any client; it reaches into nothing else.
    "qss_exporter.demo": [
        "qss_exporter.sources",
        "qss_exporter.pipeline",
        "qss_exporter.store",
        "qss_exporter.catalogue",
        "qss_exporter.outputs",
        "qss_exporter.config",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
    "qss_exporter.detail": [
        "qss_exporter.sources",
        "qss_exporter.outputs",
        "qss_exporter.pipeline",
        "qss_exporter.catalogue",
        "qss_exporter.config",
        "qss_exporter.app",
        "qss_exporter.cli",
    ],
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_follow_the_pipeline_direction(path: Path) -> None:
    module = _module_name(path)
    rules = [banned for prefix, banned in FORBIDDEN.items() if module == prefix or module.startswith(prefix + ".")]
    violations = sorted(
        imported
        for imported in _imports(path)
        for banned in rules
        for prefix in banned
        if imported.startswith(prefix) and not imported.startswith(module)
    )
    assert violations == []


def test_only_the_command_line_starts_the_demo() -> None:
    """The agent's own modules never import the simulated organisation: only `qss-exporter demo` wires it in."""
    importers = sorted(
        _module_name(path)
        for path in MODULES
        if not _module_name(path).startswith(("qss_exporter.demo", "qss_exporter.cli"))
        and any(name.startswith("qss_exporter.demo") for name in _imports(path))
    )
    assert importers == []


def test_every_module_declares_all_and_a_docstring() -> None:
    for path in MODULES:
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name}: module docstring missing"
        if path.name not in ("__init__.py", "__main__.py"):
            names = {
                t.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for t in node.targets
                if isinstance(t, ast.Name)
            }
            assert "__all__" in names, f"{_module_name(path)}: __all__ missing"
