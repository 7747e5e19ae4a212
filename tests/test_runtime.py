"""The process and Python runtime families: prometheus_client's collectors, through our renderer and OTLP."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from qss_exporter.outputs.prometheus import render
from qss_exporter.runtime import FRESH_SECONDS, RuntimeMetrics
from qss_exporter.store import Store
from tests.conftest import base_config, parse_metrics, total
from tests.process import AgentProcess

RUNTIME_FAMILIES = {
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_virtual_memory_bytes": "gauge",
    "process_start_time_seconds": "gauge",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "python_info": "gauge",
    "python_gc_objects_collected": "counter",
    "python_gc_objects_uncollectable": "counter",
    "python_gc_collections": "counter",
}


def _reference() -> dict[str, tuple[str, str, set[tuple[str, frozenset[tuple[str, str]]]]]]:
    """What prometheus_client itself exposes for the same collectors: name -> (type, help, sample keys)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return {
        family.name: (
            family.type,
            family.documentation,
            {(sample.name, frozenset(sample.labels.items())) for sample in family.samples},
        )
        for family in parse_text(generate_latest(registry).decode())
    }


def _ours(openmetrics: bool = False) -> str:
    store = Store(100, time.time)
    RuntimeMetrics().register(store)
    return render(store, openmetrics).decode()


def test_names_types_help_and_labels_are_prometheus_clients() -> None:
    reference = _reference()
    ours = {family.name: family for family in parse_text(_ours())}
    assert {name: family.type for name, family in ours.items()} == RUNTIME_FAMILIES
    assert set(ours) == set(reference)
    for name, family in ours.items():
        kind, documentation, keys = reference[name]
        assert (family.type, family.documentation) == (kind, documentation), name
        assert {(s.name, frozenset(s.labels.items())) for s in family.samples} == keys, name
    info = ours["python_info"].samples[0]
    assert info.labels["implementation"] == "CPython"
    assert info.value == 1
    generations = {s.labels["generation"] for s in ours["python_gc_collections"].samples}
    assert generations == {"0", "1", "2"}  # a closed label set, present from the start


def test_values_are_this_process() -> None:
    samples = {s.name: s.value for family in parse_text(_ours()) for s in family.samples if not s.labels}
    with open(f"/proc/{os.getpid()}/limits") as limits:
        max_fds = next(float(line.split()[3]) for line in limits if line.startswith("Max open files"))
    assert samples["process_max_fds"] == max_fds
    assert 0 < samples["process_open_fds"] <= max_fds
    assert samples["process_resident_memory_bytes"] > 10_000_000  # a Python process with these imports
    assert samples["process_virtual_memory_bytes"] >= samples["process_resident_memory_bytes"]
    assert samples["process_cpu_seconds_total"] > 0
    assert time.time() - 3600 < samples["process_start_time_seconds"] < time.time()


def test_openmetrics_rendering_parses_with_the_same_types() -> None:
    text = _ours(openmetrics=True)
    families = {f.name: f.type for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]  # untyped parser
    assert families == RUNTIME_FAMILIES


def test_one_reading_serves_a_whole_scrape() -> None:
    now = [100.0]
    runtime = RuntimeMetrics(monotonic=lambda: now[0])
    reads = 0
    collect = runtime._collect

    def counted() -> list[object]:
        nonlocal reads
        reads += 1
        return collect()

    runtime._collect = counted  # type: ignore[method-assign]  # counts the collections behind a scrape
    store = Store(100, time.time)
    runtime.register(store)
    reads = 0
    render(store)
    render(store)
    assert reads == 1
    now[0] += FRESH_SECONDS
    render(store)
    assert reads == 2


def test_the_running_agent_exposes_them_and_promtool_accepts_it(tmp_path: Path, promtool: str) -> None:
    launched = time.time()
    with AgentProcess(tmp_path, base_config()) as agent:
        text = agent.scrape_text()
        samples = parse_metrics(text)
        assert abs(total(samples, "process_start_time_seconds") - launched) < 30
        assert total(samples, "process_open_fds") > 3  # stdio, the two listeners' sockets, ...
        assert total(samples, "process_resident_memory_bytes") > 10_000_000
        assert total(samples, "python_info", implementation="CPython") == 1
        first = total(samples, "process_cpu_seconds_total")
        for _ in range(20):
            httpx.get(agent.metrics_url + "/metrics", timeout=10)
        time.sleep(FRESH_SECONDS)
        later = parse_metrics(agent.scrape_text())
        assert total(later, "process_cpu_seconds_total") > first  # it moves while the agent runs
        assert total(later, "python_gc_collections_total", generation="0") > 0
        check = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        openmetrics = agent.scrape_text(headers={"accept": "application/openmetrics-text"})
        parsed = {f.name: f.type for f in parse_openmetrics(openmetrics)}  # type: ignore[no-untyped-call]  # untyped parser
        assert {name: parsed[name] for name in RUNTIME_FAMILIES} == RUNTIME_FAMILIES
