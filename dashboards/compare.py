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
import fnmatch
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EQUIVALENT", "Equivalence", "counts", "differences", "main", "normalise", "read_revision"]


@dataclass(frozen=True, slots=True)
class Equivalence:
    """A key at `path` (fnmatch pattern; `[]` stands for any list index) whose `value` equals its absence."""

    path: str
    value: Any
    why: str


EQUIVALENT: tuple[Equivalence, ...] = ()


def _equivalent(path: str, value: Any) -> bool:
    return any(fnmatch.fnmatchcase(path, e.path) and value == e.value for e in EQUIVALENT)


def normalise(node: Any, path: str = "") -> Any:
    """`node` without the keys that EQUIVALENT says Grafana reads the same when absent."""
    if isinstance(node, Mapping):
        out = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if not _equivalent(child, value):
                out[key] = normalise(value, child)
        return out
    if isinstance(node, list):
        return [normalise(value, f"{path}[]") for value in node]
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
    applied: Counter[str] = Counter()
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
        for e in EQUIVALENT:
            n = sum(count for path, count in applied.items() if fnmatch.fnmatchcase(path, e.path))
            if n:
                sys.stdout.write(f"  {n:4d} x {e.path} = {json.dumps(e.value)}: {e.why}\n")
    return 1 if found else 0


def _equivalent_keys(node: Any, path: str = "") -> list[str]:
    """The path of every key in `node` that normalise() drops, for the report."""
    found: list[str] = []
    if isinstance(node, Mapping):
        for key, value in node.items():
            child = f"{path}.{key}" if path else key
            if _equivalent(child, value):
                found.append(child)
            else:
                found.extend(_equivalent_keys(value, child))
    elif isinstance(node, list):
        for value in node:
            found.extend(_equivalent_keys(value, f"{path}[]"))
    return found


if __name__ == "__main__":
    raise SystemExit(main())
