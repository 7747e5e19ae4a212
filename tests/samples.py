"""Access to the shared synthetic Zoom samples (../shared/zoom-qss/samples) used across tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "zoom-qss" / "samples"


def sample_path(name: str) -> Path:
    path = SAMPLES / f"{name}.json"
    if not path.exists():
        pytest.skip(f"shared Zoom samples not found at {SAMPLES}")
    return path


def load_sample(name: str) -> Any:
    return json.loads(sample_path(name).read_text())


def sample_bytes(name: str) -> bytes:
    """The sample as compact JSON bytes, as Zoom would POST it."""
    return json.dumps(load_sample(name), separators=(",", ":")).encode()
