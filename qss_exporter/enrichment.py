"""What `*_data` events told us about each participant, as label values for their later QoS records.

Keyed by (account id, instance, participant id); entries expire after a TTL and the table is
bounded (least recently updated first out). IP addresses are used here, once per data event, to
find the operator's site, and are not kept. Every label value comes from a bounded set: the closed
vocabularies of zoom/vocabulary.py, the known data-centre codes, and at most CLIENT_VERSIONS_MAX
client versions at a time; anything else is `other`.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Final

from qss_exporter.seconds import SharedSeconds
from qss_exporter.zoom.records import ParticipantInfo
from qss_exporter.zoom.vocabulary import CLIENT_OS_VALUES, DATA_CENTERS, NETWORK_TYPES, client_version

__all__ = ["CLIENT_VERSIONS_MAX", "ENRICHMENT_LABELS", "ParticipantDirectory", "SiteMap"]

# Every enrichment label the exporter knows, in the order they appear on a series.
ENRICHMENT_LABELS = ("network_type", "site", "data_center", "client_os", "client_version")
UNKNOWN = "unknown"
OTHER = "other"
# Distinct client versions labelled at a time (an organisation runs a few dozen major.minor versions
# across desktop, mobile, Rooms and SDKs); a version unseen for `value_ttl` frees its place.
CLIENT_VERSIONS_MAX: Final = 50


class _BoundedValues:
    """At most `limit` distinct values at a time, each kept while seen within `ttl`; the rest are `other`."""

    def __init__(self, limit: int, ttl: float) -> None:
        self._limit = limit
        self._ttl = ttl
        self._seen: dict[str, float] = {}

    def admit(self, value: str, now: float) -> str:
        if value in self._seen or len(self._seen) < self._limit:
            self._seen[value] = now
            return value
        return OTHER

    def snapshot(self) -> dict[str, float]:
        return dict(self._seen)

    def restore(self, seen: Mapping[str, float]) -> None:
        for value, at in seen.items():
            if value in self._seen or len(self._seen) < self._limit:
                self._seen[value] = max(float(at), self._seen.get(value, 0.0))

    def expire(self, now: float) -> None:
        cutoff = now - self._ttl
        for value in [value for value, seen in self._seen.items() if seen < cutoff]:
            del self._seen[value]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SiteMap:
    """Operator-defined CIDR -> site name; the longest matching prefix wins."""

    def __init__(self, sites: Iterable[tuple[str, Sequence[str]]]) -> None:
        networks = [(ipaddress.ip_network(cidr, strict=False), name) for name, cidrs in sites for cidr in cidrs]
        self._networks: list[tuple[Network, str]] = sorted(networks, key=lambda item: -item[0].prefixlen)

    def __bool__(self) -> bool:
        return bool(self._networks)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for _, name in self._networks)

    def site_of(self, addresses: Iterable[str]) -> str:
        for text in addresses:
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            for network, name in self._networks:
                if address.version == network.version and address in network:
                    return name
        return UNKNOWN


class ParticipantDirectory:
    """Label values per participant for the enabled enrichment labels (`labels` order)."""

    def __init__(
        self,
        labels: Sequence[str],
        sites: SiteMap,
        ttl: float,
        max_entries: int,
        *,
        extra_data_centers: Collection[str] = (),
        value_ttl: float = 86_400.0,
    ) -> None:
        unknown = set(labels) - set(ENRICHMENT_LABELS)
        if unknown:
            raise ValueError(f"unknown enrichment labels {sorted(unknown)}")
        self.labels = tuple(labels)
        self._data_centers = DATA_CENTERS | {code.upper() for code in extra_data_centers}
        # A version label's series live `limits.series_ttl_seconds`: its place is freed no sooner.
        self._versions = _BoundedValues(CLIENT_VERSIONS_MAX, value_ttl)
        self.default = (UNKNOWN,) * len(self.labels)
        self._sites = sites
        self._ttl = ttl
        self._max_entries = max_entries
        # When each participant was updated, in whole seconds shared per second (seconds.py), and their
        # values: two dicts instead of a (float, values) tuple each, ~40 bytes less per participant.
        # Insertion order of `_updated` is update order (an update re-inserts): expiry takes from the front.
        self._updated: dict[tuple[str, str, str], int] = {}
        self._values: dict[tuple[str, str, str], tuple[str, ...]] = {}
        self._second = SharedSeconds()
        self._label_sets: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._updated)

    def reconfigure(self, sites: SiteMap, extra_data_centers: Collection[str]) -> None:
        """New sites and data-centre codes (a configuration reload). Participants keep the values their data
        events gave them; their next data event is read with the new map."""
        self._sites = sites
        self._data_centers = DATA_CENTERS | {code.upper() for code in extra_data_centers}

    def snapshot(self) -> dict[str, Any]:
        """Plain data for persistence.py: the label names, each entry and the client versions admitted."""
        return {
            "labels": list(self.labels),
            # In columns, least recently updated first: no object per entry is made on the event loop.
            "keys": list(self._updated),
            "updated": list(self._updated.values()),
            "values": [self._values[key] for key in self._updated],
            "versions": self._versions.snapshot(),
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a `snapshot()`; values are matched by label name, so that a label turned on since then
        is `unknown` and one turned off is dropped. Entries this directory holds already stay as they are.
        A schema 1 snapshot has (updated, values) pairs in "entries"."""
        names = list(data["labels"])
        picks = [names.index(name) if name in names else -1 for name in self.labels]
        # A saved value counts only if a data event could give it now: the file is input like any other.
        valid = [self._valid(name) for name in self.labels]
        pairs = zip(data["updated"], data["values"], strict=True) if "updated" in data else data["entries"]
        updated: dict[tuple[str, str, str], int] = {}
        restored: dict[tuple[str, str, str], tuple[str, ...]] = {}
        for (account_id, instance, participant_id), (at, values) in zip(data["keys"], pairs, strict=True):
            mapped = tuple(
                values[i] if i >= 0 and check(values[i]) else UNKNOWN for i, check in zip(picks, valid, strict=True)
            )
            key = (account_id, instance, participant_id)
            updated[key] = self._second(float(at))
            restored[key] = self._label_sets.setdefault(mapped, mapped)
        for key in self._updated:  # entries learned since the start are newer: they stay, last in order
            updated.pop(key, None)
            restored.pop(key, None)
        updated.update(self._updated)
        restored.update(self._values)
        excess = max(0, len(updated) - self._max_entries)
        for key in list(itertools.islice(updated, excess)):
            del updated[key], restored[key]
        self.evicted += excess
        self._updated, self._values = updated, restored
        self._versions.restore(data["versions"])

    def _valid(self, label: str) -> Callable[[object], bool]:
        """Whether a value is one `label` can take with this configuration (restored values are checked)."""
        if label == "client_version":  # major.minor of at most two digits each (vocabulary.client_version)
            return lambda value: value in (OTHER, UNKNOWN) or client_version(value) == value
        values = {
            "network_type": NETWORK_TYPES,
            "site": self._sites.names,
            "data_center": self._data_centers | {OTHER},
            "client_os": CLIENT_OS_VALUES,
        }[label] | {UNKNOWN}
        return values.__contains__

    def lookup(self, account_id: str, instance: str, participant_id: str) -> tuple[str, ...]:
        return self._values.get((account_id, instance, participant_id), self.default)

    def known(self, info: ParticipantInfo, now: float) -> tuple[str | None, ...]:
        """The label values `info` gives (`labels` order), None where it says nothing."""
        data_center, version = info.data_center, info.client_version
        known = {
            "network_type": info.network_type,
            "site": self._sites.site_of(info.addresses) if info.addresses else None,
            "data_center": data_center if data_center is None or data_center in self._data_centers else OTHER,
            "client_os": info.client_os,
            "client_version": version if version is None else self._versions.admit(version, now),
        }
        return tuple(known[name] for name in self.labels)

    def update(self, info: ParticipantInfo, now: float) -> tuple[str, ...]:
        key = (info.account_id, info.instance, info.participant_id)
        old = self._values.get(key, self.default)
        # A later data event that leaves a field empty does not erase what an earlier one said.
        values = tuple(value or old_value for value, old_value in zip(self.known(info, now), old, strict=True))
        return self.put(key, values, now)

    def put(self, key: tuple[str, str, str], values: tuple[str, ...], now: float) -> tuple[str, ...]:
        """Hold `values` for participant `key` (account id, instance, participant id): a data event's, or
        the shared directory's (shared_state.py)."""
        updated, held = self._updated, self._values
        # Only the update order is re-inserted (re-inserting into both grew the dicts more, by tracemalloc,
        # than the key tuple the two then hold apart for a participant updated twice).
        updated.pop(key, None)
        # Thousands of participants share a handful of label combinations: keep one tuple of each.
        values = self._label_sets.setdefault(values, values)
        updated[key] = self._second(now)
        held[key] = values
        if len(updated) > self._max_entries:
            oldest = next(iter(updated))
            del updated[oldest], held[oldest]
            self.evicted += 1
        return values

    def entries(self) -> list[tuple[tuple[str, str, str], float, tuple[str, ...]]]:
        """Every participant held: (account id, instance, participant id), when it was updated, its values."""
        values = self._values
        return [(key, float(updated), values[key]) for key, updated in self._updated.items()]

    def admit(self, values: Sequence[str], now: float) -> tuple[str, ...]:
        """Label values another replica wrote (shared_state.py), held to this replica's closed sets: a value
        no data event could give here is `other` (`unknown` for a site), and a client version takes one of
        the CLIENT_VERSIONS_MAX places like a local one."""
        admitted: list[str] = []
        for name, value in zip(self.labels, values, strict=True):
            if value != UNKNOWN:
                if name == "network_type":
                    value = value if value in NETWORK_TYPES else OTHER
                elif name == "site":
                    value = value if value in self._sites.names else UNKNOWN
                elif name == "data_center":
                    value = value if value in self._data_centers or value == OTHER else OTHER
                elif name == "client_os":
                    value = value if value in CLIENT_OS_VALUES else OTHER
                else:
                    value = self._versions.admit(value, now)
            admitted.append(value)
        return tuple(admitted)

    def expire(self, now: float) -> int:
        self._versions.expire(now)
        cutoff = now - self._ttl
        stale: list[tuple[str, str, str]] = []
        for key, updated in self._updated.items():  # oldest first: up to the first one still fresh
            if updated >= cutoff:
                break
            stale.append(key)
        for key in stale:
            del self._updated[key], self._values[key]
        return len(stale)
