"""`limits.max_series` holds for every family, computed gauges included, and refusals count distinct series."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.adversarial.conftest import post, qos_event, scrape
from tests.conftest import base_config, total
from tests.process import AgentProcess

CAP = 150
# Fixed-size self-metrics computed at scrape time: outside the cap, so that it cannot hide its refusals.
UNCAPPED = {
    "zoom_qss_series",
    "zoom_qss_series_dropped",
    "zoom_qss_dedupe_keys",
    "zoom_qss_dedupe_evicted",
    "zoom_qss_enrichment_participants",
}


@pytest.fixture(scope="module")
def capped_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProcess]:
    config = base_config() | {"limits": {"max_series": CAP}}
    config["labels"] = {"data_center": True, "client_os": True, "client_version": True}
    with AgentProcess(tmp_path_factory.mktemp("cap"), config) as agent:
        yield agent


def _participant(n: int) -> list[dict[str, Any]]:
    """A participant on their own combination of site, network, OS and version: new series everywhere."""
    who = f"cap-{n}"
    info = qos_event("meeting.participant_data", participant=who)
    data = info["payload"]["object"]["participant"]["data"][0]
    data.update(
        network_type=["Wired", "Wifi", "Cellular", "PPP"][n % 4],
        device=["Windows", "Mac", "iOS", "Android", "Linux"][n % 5],
        version=f"6.{n % 40}",
        signaling_ip_address=["10.20.0.1", "192.168.1.7", "203.0.113.9"][n % 3],
    )
    return [info, qos_event(participant=who)]


def _exposed_series(text: str) -> dict[str, int]:
    """Series per family as a scraper sees them (a histogram's buckets, sum and count are one series)."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        keys = {
            frozenset((k, v) for k, v in sample.labels.items() if k != "le")
            for sample in family.samples
            if not sample.name.endswith("_created")
        }
        counts[family.name] = len(keys)
    return counts


def test_the_cap_holds_with_computed_gauges_and_counts_each_refused_series_once(capped_agent: AgentProcess) -> None:
    for n in range(40):
        for body in _participant(n):
            assert post(capped_agent, body).status_code == 200
    text = capped_agent.scrape_text()
    exposed = _exposed_series(text)
    capped = {name: count for name, count in exposed.items() if name not in UNCAPPED}
    assert sum(capped.values()) <= CAP
    samples = scrape(capped_agent)
    held = {labels: value for (name, labels), value in samples.items() if name == "zoom_qss_series"}
    assert sum(held.values()) == sum(capped.values())  # the agent's own count agrees with what it exposes
    assert total(samples, "zoom_qss_series_dropped_total", family="zoom_qss_media_latency_seconds") > 0
    refused_active = total(samples, "zoom_qss_series_dropped_total", family="zoom_qss_active_participants")
    assert refused_active > 0  # the computed gauge was cut to the room the cap left
    dropped = {
        re.sub(r"\W", "", str(sorted(labels))): value
        for (name, labels), value in samples.items()
        if name == "zoom_qss_series_dropped_total"
    }

    # The same participants again, a minute later: the same refused series, updated again, not recounted.
    for n in range(40):
        again = _participant(n)[1]
        again["event_ts"] += 60_000
        assert post(capped_agent, again).status_code == 200
    samples = scrape(capped_agent)
    assert {
        re.sub(r"\W", "", str(sorted(labels))): value
        for (name, labels), value in samples.items()
        if name == "zoom_qss_series_dropped_total"
    } == dropped
