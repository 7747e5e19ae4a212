"""Pipeline state over time: expiry of series, participants, calls and enrichment, bounded tables."""

from __future__ import annotations

import time
from typing import Any

from qss_exporter.app import Agent
from qss_exporter.config import config_from_mapping
from qss_exporter.enrichment import CLIENT_VERSIONS_MAX, ParticipantDirectory, SiteMap
from qss_exporter.zoom import vocabulary as vocab
from qss_exporter.zoom.events import decode
from qss_exporter.zoom.records import ParticipantInfo, QosRecord
from tests.conftest import MutableClock, base_config, merge
from tests.samples import load_sample


def _record(name: str, **changes: Any) -> Any:
    body = load_sample(name)
    body["event_ts"] = int(time.time() * 1000)
    for key, value in changes.items():
        body["payload"]["object"]["participant"][key] = value
    return decode(body)


def test_everything_per_entity_expires_and_the_store_returns_to_baseline() -> None:
    clock = MutableClock()
    agent = Agent(
        config_from_mapping(
            merge(base_config(), {"limits": {"series_ttl_seconds": 3600}, "pipeline": {"enrichment_ttl_seconds": 7200}})
        ),
        clock=clock,
    )

    def expiring_series() -> int:
        return sum(len(family) for family in agent.store.stored_families() if family.ttl is not None)

    for participant in range(50):
        info = _record("meeting.participant_data", participant_id=str(participant))
        qos = _record("meeting.participant_qos", user_id=str(participant))
        assert isinstance(info, ParticipantInfo)
        assert isinstance(qos, QosRecord)
        agent.pipeline.ingest(info, "webhook")
        agent.pipeline.ingest(qos, "webhook")
    assert expiring_series() > 0
    assert len(agent.pipeline.participants) == 50
    clock.advance(3601)
    agent.pipeline.expire()
    assert expiring_series() == 0  # every QoS series gone; self-metrics (no TTL) stay
    assert len(agent.pipeline.participants) == 0
    assert len(agent.pipeline.time) == 0  # the record-time state goes with the activity window
    assert agent.pipeline.account_label("Xq3vTn0bR8aL5mWcY2kPzQ") == "acme"
    clock.advance(3600)
    agent.pipeline.expire()
    assert agent.catalogue.media_records.value(("acme", "meeting", "audio", "input", "client", "wifi", "leeds")) == 0


def _info(
    participant: str,
    addresses: tuple[str, ...] = (),
    network: str | None = "wifi",
    version: str | None = "6.2",
    data_center: str | None = "FR",
) -> ParticipantInfo:
    return ParticipantInfo(
        "meeting.participant_data",
        "a",
        "meeting",
        "m",
        participant,
        None,
        ("k",),
        network,
        "macos",
        version,
        data_center,
        addresses,
        False,
    )


def test_directory_merges_later_partial_data_and_is_bounded() -> None:
    directory = ParticipantDirectory(
        ("network_type", "site", "client_os"), SiteMap([("leeds", ["10.20.0.0/16"])]), ttl=100, max_entries=3
    )
    directory.update(_info("1", ("10.20.1.1",)), now=0)
    directory.update(_info("1", (), network=None), now=1)  # a later event without network type or IPs
    assert directory.lookup("a", "m", "1") == ("wifi", "leeds", "macos")
    for participant in ("2", "3", "4"):
        directory.update(_info(participant), now=2)
    assert len(directory) == 3
    assert directory.evicted == 1
    assert directory.lookup("a", "m", "1") == ("unknown", "unknown", "unknown")  # least recently updated went first
    assert directory.expire(now=103) == 3
    assert len(directory) == 0


def test_directory_expires_by_whole_seconds_never_early_and_saves_in_columns() -> None:
    directory = ParticipantDirectory(("network_type",), SiteMap([]), ttl=100, max_entries=10)
    directory.update(_info("1"), now=10.0)
    directory.update(_info("2"), now=20.0)
    directory.update(_info("1", network="wired"), now=30.0)  # updated: now after 2 in expiry order
    assert directory.entries() == [(("a", "m", "2"), 20.0, ("wifi",)), (("a", "m", "1"), 30.0, ("wired",))]
    saved = directory.snapshot()
    assert saved["keys"] == [("a", "m", "2"), ("a", "m", "1")]
    assert saved["updated"] == [20, 30]
    assert saved["values"] == [("wifi",), ("wired",)]
    restored = ParticipantDirectory(("network_type",), SiteMap([]), ttl=100, max_entries=1)
    restored.restore(saved)  # over its cap: the least recently updated goes
    assert restored.entries() == [(("a", "m", "1"), 30.0, ("wired",))]
    assert restored.evicted == 1
    assert directory.expire(now=120.0) == 0  # a TTL to the second: 2 is 100 s old, not older
    assert directory.expire(now=120.5) == 1
    assert directory.expire(now=130.5) == 1
    assert len(directory) == 0
    directory.update(_info("3"), now=10.2)  # held as second 11: it expires no earlier than 110.2
    assert directory.expire(now=110.5) == 0
    assert directory.expire(now=111.5) == 1


def test_site_map_longest_prefix_wins_and_ipv6_works() -> None:
    sites = SiteMap([("campus", ["10.0.0.0/8"]), ("lab", ["10.20.30.0/24"]), ("v6", ["2001:db8::/32"])])
    assert sites.site_of(["10.20.30.4"]) == "lab"
    assert sites.site_of(["10.1.1.1"]) == "campus"
    assert sites.site_of(["2001:db8::1"]) == "v6"
    assert sites.site_of(["not-an-ip", "192.0.2.1"]) == "unknown"
    assert sites.site_of(["198.51.100.7", "10.1.1.1"]) == "campus"  # public signalling IP first, LAN IP matches


def test_data_centres_are_zoom_s_documented_codes_or_the_operator_s_else_other() -> None:
    directory = ParticipantDirectory(
        ("data_center",), SiteMap([]), ttl=100, max_entries=100, extra_data_centers=("sy",)
    )
    raw = {"FR (Sub)": "FR", "Germany (FR Top)": "FR", "SY (Sub)": "SY", "QQ (Sub)": "other", "x" * 5000: "other"}
    for n, (text, label) in enumerate(raw.items()):
        directory.update(_info(str(n), data_center=vocab.data_center(text)), now=0)
        assert directory.lookup("a", "m", str(n)) == (label,), text


def test_client_versions_are_bounded_in_number_and_a_quiet_one_frees_its_place() -> None:
    directory = ParticipantDirectory(("client_version",), SiteMap([]), ttl=10_000, max_entries=1000, value_ttl=60)
    for n in range(CLIENT_VERSIONS_MAX + 10):
        directory.update(_info(str(n), version=f"9.{n}"), now=0)
    labels = {directory.lookup("a", "m", str(n))[0] for n in range(CLIENT_VERSIONS_MAX + 10)}
    assert len(labels) == CLIENT_VERSIONS_MAX + 1
    assert "other" in labels
    directory.update(_info("0", version="9.0"), now=50)  # one version stays in use
    directory.expire(now=100)  # the others were last seen at 0: their places are free again
    directory.update(_info("new", version="7.7"), now=100)
    assert directory.lookup("a", "m", "new") == ("7.7",)


def test_a_reload_maps_the_next_data_event_with_the_new_sites_and_keeps_what_was_given() -> None:
    directory = ParticipantDirectory(("site", "data_center"), SiteMap([("leeds", ["10.20.0.0/16"])]), 100, 100)
    directory.update(_info("before", ("10.30.1.1",), data_center="ZZ"), now=0)
    assert directory.lookup("a", "m", "before") == ("unknown", "other")
    directory.reconfigure(SiteMap([("leeds", ["10.20.0.0/16"]), ("lisbon", ["10.30.0.0/16"])]), ("zz",))
    assert directory.lookup("a", "m", "before") == ("unknown", "other")  # kept until their next data event
    directory.update(_info("after", ("10.30.1.2",), data_center="ZZ"), now=1)
    directory.update(_info("before", ("10.30.1.1",), data_center="ZZ"), now=1)
    assert directory.lookup("a", "m", "after") == directory.lookup("a", "m", "before") == ("lisbon", "ZZ")
