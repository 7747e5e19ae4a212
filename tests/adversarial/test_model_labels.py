"""A label-poisoning attempt by a holder of one account's secret grows /metrics by less than 64 KiB.

Before: two signed events with a 400 kB `account_id` grew /metrics by ~190 MB and the agent past 1 GB.
Now every label value comes from a bounded set (configured accounts, closed vocabularies, Zoom's
data-centre codes, at most 50 client versions), so hostile values add no series at all.
"""

from __future__ import annotations

import itertools
import random
import string
from typing import Any

from tests.adversarial.conftest import post, qos_event, rss_bytes, scrape
from tests.conftest import SECRET
from tests.process import AgentProcess

KIB, MIB = 1024, 1024 * 1024
_names = itertools.count(1)


def _participant(data: dict[str, Any], notification: str = "network bandwidth low") -> list[dict[str, Any]]:
    """A participant's data event with `data` and their real-time event, whose words are `notification`."""
    who = f"poison-{next(_names)}"
    info = qos_event("meeting.participant_data", participant=who)
    info["payload"]["object"]["participant"]["data"] = [data]
    qos = qos_event(participant=who)
    for entry in qos["payload"]["object"]["participant"]["qos"]:
        if entry["type"] == "notification":
            entry["details"]["network_notification"] = notification
    return [info, qos]


def _hostile(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return "".join(rng.choices(string.printable, k=rng.randrange(1, 3000)))
    if kind == 1:
        return f"{rng.randrange(100, 10**9)}.{rng.randrange(10**9)}"  # a version no client has
    if kind == 2:
        return "".join(rng.choices(string.ascii_uppercase, k=rng.randrange(5, 40))) + " (Sub)"
    if kind == 3:
        return "\u202e" + "ȥ" * rng.randrange(1, 50) + '\n"}'
    return "\x00" * rng.randrange(1, 100)


def test_label_poisoning_grows_metrics_by_less_than_64_kib(shared_agent: AgentProcess) -> None:
    # Warm-up: a real participant on values this agent does not know ("other" everywhere), e.g. a data
    # centre Zoom opened last week: the label sets that hostile values fall into already exist.
    unknown = {"data_center": "SY (Sub)", "version": "Zoom Rooms", "device": "Console", "network_type": "Mesh"}
    for body in _participant(unknown, "printer on fire"):
        assert post(shared_agent, body).status_code == 200
    before_text, before_rss = shared_agent.scrape_text(), rss_bytes(shared_agent)

    # 1. The attack of the issue: two ~400 kB events whose account_id is itself 400 kB.
    for fill in ("A", "B"):
        huge = qos_event(account_id=fill * 400_000)
        assert post(shared_agent, huge, secret=SECRET).status_code == 403
    # 2. Hundreds of account ids, data centres, versions, devices, network types and words.
    rng = random.Random(11)
    for n in range(100):
        assert post(shared_agent, qos_event(account_id=f"Poison{n:016d}"), secret=SECRET).status_code == 403
    for _ in range(60):
        data = {key: _hostile(rng) for key in ("data_center", "version", "device", "network_type")}
        data["signaling_ip_address"] = _hostile(rng)
        for body in _participant(data, _hostile(rng)):
            for entry in body["payload"]["object"]["participant"].get("qos", []):
                entry["details"]["quality"] = _hostile(rng)
                entry["details"]["rssi_unit"] = _hostile(rng)
            assert post(shared_agent, body).status_code == 200

    after_text, after_rss = shared_agent.scrape_text(), rss_bytes(shared_agent)
    growth = len(after_text.encode()) - len(before_text.encode())
    assert growth < 64 * KIB, f"/metrics grew by {growth} bytes"
    assert after_rss - before_rss < 32 * MIB, f"RSS grew by {(after_rss - before_rss) / MIB:.1f} MiB"
    values: dict[str, set[str]] = {}
    for (_, labels), _ in scrape(shared_agent).items():
        for name, value in labels:
            values.setdefault(name, set()).add(value)
    assert values["account"] <= {"acme", "acme-health", "msp", "DeclaredSub00000000001"}
    assert values["data_center"] <= {"FR", "AMS", "DV", "SC", "NY", "other", "unknown"}
    assert values["client_version"] <= {"6.2", "6.1", "5.17", "other", "unknown"}
    assert values["notification"] <= {"network_bandwidth_low", "internet_connection_unstable", "other"}
    assert all(len(value) <= 63 for name, found in values.items() if name != "family" for value in found)
