"""Zoom's synthetic sample payloads, shipped in tests/testdata/zoom (a copy of the design's
zoom-qss/samples: invented ids, names and numbers in Zoom's documented shapes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parent / "testdata" / "zoom"


def sample_path(name: str) -> Path:
    return SAMPLES / f"{name}.json"


def load_sample(name: str) -> Any:
    return json.loads(sample_path(name).read_text())


def sample_bytes(name: str) -> bytes:
    """The sample as compact JSON bytes, as Zoom would POST it."""
    return json.dumps(load_sample(name), separators=(",", ":")).encode()
