"""The standard process and Python runtime families, from prometheus_client's own collectors.

Every exporter built on a Prometheus client library exposes these, and users' generic "exporter
health" dashboards and alerts rely on them: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
`process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_start_time_seconds`
(from /proc; absent where there is none, as with prometheus_client), `python_info` and `python_gc_*`.
They are read by prometheus_client's `ProcessCollector`, `PlatformCollector` and `GCCollector`, each
on a private `CollectorRegistry` (never the global one), and enter the store as callback families:
computed when /metrics is rendered or an OTLP export is built, never on the webhook path. Sample:

    # HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
    # TYPE process_cpu_seconds_total counter
    process_cpu_seconds_total 4.37
    python_gc_collections_total{generation="0"} 812
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from qss_exporter.store import FamilyType, Sample, Store

__all__ = ["FRESH_SECONDS", "RuntimeMetrics"]

# One reading serves every family of a scrape (and an OTLP export right after it): ProcessCollector
# reads three /proc files per collection, measured ~0.3 ms, and there are six process families.
FRESH_SECONDS = 0.5


class RuntimeMetrics:
    """Collects the three collectors at most every FRESH_SECONDS and hands out their samples by family."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)
        GCCollector(registry=self._registry)
        self._monotonic = monotonic
        self._read_at = float("-inf")
        self._samples: dict[str, list[Sample]] = {}
        self._labelnames: dict[str, tuple[str, ...]] = {}  # family -> its label names, fixed at registration

    def _collect(self) -> list[Any]:
        return list(self._registry.collect())

    def register(self, store: Store) -> None:
        """One callback family per collected family, with prometheus_client's names, types, help and labels."""
        for family in self._collect():
            samples = family.samples
            name = samples[0].name if samples else family.name  # counters: the sample name ends in _total
            labelnames = self._labelnames[name] = tuple(samples[0].labels) if samples else ()
            kind: FamilyType = "counter" if family.type == "counter" else "gauge"
            store.callback(name, family.documentation, labelnames, functools.partial(self._read, name), type=kind)

    def _read(self, name: str) -> list[Sample]:
        now = self._monotonic()
        if now - self._read_at >= FRESH_SECONDS:
            self._read_at = now
            self._samples = {}
            for family in self._collect():
                for sample in family.samples:
                    labelnames = self._labelnames.get(sample.name)
                    if labelnames is not None:
                        labels = tuple(sample.labels.get(label, "") for label in labelnames)
                        self._samples.setdefault(sample.name, []).append(Sample(labels, float(sample.value)))
        return self._samples.get(name, [])
