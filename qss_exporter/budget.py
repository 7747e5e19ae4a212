"""The series budget: every family's worst-case number of series for a configuration, before Prometheus pays it.

A family's worst case is the product, over its labels, of how many values each label can take
(docs/metrics.md, "Series budget"). It is evaluated over the families a store really holds for the
configuration, so a family added to the catalogue is counted without a change here, and over the
closed value sets the code labels with: zoom/vocabulary.py's, the catalogue's outcome and reason sets,
the configured accounts, sites and sources. Labels whose values only occur together count once as a
group (media, direction and path are the 18 QoS stream types). A label with no value set declared
here is reported as such, never guessed. Knows the configuration and the families; not the pipeline.

    budget = series_budget(config, store.families())
    budget.total_series, budget.warnings()
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args

from qss_exporter.catalogue import (
    CPU_MEASURES,
    LISTENER_REJECTIONS,
    LISTENERS,
    POLL_OUTCOMES,
    SUMMARY_STATS,
    TOKEN_OUTCOMES,
    WEBHOOK_OUTCOMES,
    WEBSOCKET_CONNECT_FAILURES,
    WEBSOCKET_EVENT_OUTCOMES,
    WEBSOCKET_MODULES,
    WEBSOCKET_RECONNECTS,
)
from qss_exporter.config import Config
from qss_exporter.enrichment import CLIENT_VERSIONS_MAX
from qss_exporter.leadership import LEADER_CHANGES
from qss_exporter.persistence import CHECKPOINT_OUTCOMES, RESTORE_OUTCOMES
from qss_exporter.reload import RELOAD_OUTCOMES
from qss_exporter.shared_state import LOCAL_DECISION_REASONS
from qss_exporter.store import AnyFamily, CallbackFamily, HistogramFamily
from qss_exporter.zoom.api import LIMIT_TYPES
from qss_exporter.zoom.events import CONTEXT_EVENTS, KNOWN_EVENTS, PARSE_ERRORS
from qss_exporter.zoom.measured import UNMEASURED_FIELDS
from qss_exporter.zoom.records import Media, Product, Quality
from qss_exporter.zoom.vocabulary import (
    CLIENT_OS_VALUES,
    DATA_CENTERS,
    NETWORK_TYPES,
    NOTIFICATIONS,
    PHONE_DIRECTIONS,
    PHONE_LEGS,
    STREAM_TYPES,
)

__all__ = ["TARGET_SAMPLES", "Budget", "FamilyBudget", "series_budget"]

# Prometheus series (exposition samples: every histogram bucket is one) that one scrape target should
# stay below. Prometheus's guidance is to keep label cardinality small ("Instrumentation: Use labels");
# Robust Perception's `sample_limit` article names targets with "hundreds of thousands of time series on
# every scrape" as the case that causes Prometheus performance problems; Grafana Mimir's default limit
# for a whole tenant is 150,000 active series. Past 100,000 one exporter is that case.
TARGET_SAMPLES = 100_000

_LEAVES = ("unknown", "other")  # enrichment values besides the vocabulary: no data event yet; past the bound
_HTTP_STATUSES = 900 + 1  # any three-digit status Zoom's API (or a proxy) answers, and `error`
_ENDPOINTS = 2 * (3 + 2)  # the summary endpoints of 3 products and the 2 lists, each also under /accounts/{id}
_OTLP_OUTCOMES = 2  # ok, failed
_DETAIL_KINDS = 2  # participant(s), meeting(s)
_GENERATIONS = len(gc.get_count())  # python_gc_*{generation}
_DETAIL_LABELS = frozenset({"meeting", "participant"})
_STREAM = frozenset({"media", "direction", "path"})
_DETAIL_CAP = "detail.max_series"
_PRODUCTS, _MEDIA, _QUALITIES = len(get_args(Product)), len(get_args(Media)), len(get_args(Quality))


@dataclass(frozen=True, slots=True)
class FamilyBudget:
    """One family's worst case: `series` (label sets, what `limits.max_series` counts) and `samples`
    (exposition lines, what Prometheus stores as series: a histogram has its buckets + 3)."""

    name: str
    series: int
    samples: int
    shared_cap: str | None = None  # a cap this family shares with others (detail mode's `detail.max_series`)


@dataclass(frozen=True, slots=True)
class Budget:
    """The worst case of every family of one configuration, and what it means for the caps."""

    families: tuple[FamilyBudget, ...]
    unknown: tuple[str, ...]  # `family: label` pairs with no declared value set (not counted)
    max_series: int
    caps: Mapping[str, int] = field(default_factory=dict)  # shared cap -> its value

    def _total(self, count: Callable[[FamilyBudget], int]) -> int:
        """The sum over families, each shared cap bounding its families together."""
        shared: dict[str, int] = {}
        total = 0
        for family in self.families:
            if family.shared_cap is None:
                total += count(family)
            else:
                shared[family.shared_cap] = shared.get(family.shared_cap, 0) + count(family)
        return total + sum(min(value, self.caps[cap]) for cap, value in shared.items())

    @property
    def total_series(self) -> int:
        return self._total(lambda family: family.series)

    @property
    def total_samples(self) -> int:
        return self._total(lambda family: family.samples)

    def largest(self, count: int) -> list[FamilyBudget]:
        return sorted(self.families, key=lambda family: -family.series)[:count]

    def warnings(self) -> list[str]:
        """What the operator should know before Prometheus pays for this configuration."""
        found: list[str] = []
        if self.total_series > self.max_series:
            found.append(
                f"series budget: the worst case, {self.total_series:,} series, is more than limits.max_series "
                f"({self.max_series:,}): past it new series are refused and counted in "
                "zoom_qss_series_dropped_total; turn labels off, map fewer sites, or raise limits.max_series"
            )
        if self.total_samples > TARGET_SAMPLES:
            found.append(
                f"series budget: the worst case, {self.total_samples:,} Prometheus series per scrape, is more "
                f"than a single target should carry ({TARGET_SAMPLES:,}, docs/metrics.md#series-budget); "
                "turn labels off or map fewer sites"
            )
        found += [f"series budget: {where} has no declared set of values; not counted" for where in self.unknown]
        return found

    def table(self) -> list[str]:
        """The budget as aligned lines, one per family that can hold a series (check-config prints them)."""
        width = max((len(family.name) for family in self.families), default=10)
        lines = [f"  {'family':<{width}}  {'series':>10}  {'samples':>11}"]
        empty = 0
        for family in self.families:
            if not family.series:
                empty += 1
                continue
            note = f"  (all together at most {family.shared_cap})" if family.shared_cap else ""
            lines.append(f"  {family.name:<{width}}  {family.series:>10,}  {family.samples:>11,}{note}")
        lines.append(f"  {'total':<{width}}  {self.total_series:>10,}  {self.total_samples:>11,}")
        if empty:
            lines.append(f"  ({empty} families of features this configuration leaves off hold no series)")
        lines.append(
            f"  limits.max_series {self.max_series:,}; one Prometheus target should stay below "
            f"{TARGET_SAMPLES:,} samples per scrape"
        )
        return lines

    def summary(self) -> str:
        """One line for the start-up log: the totals and the largest families."""
        largest = ", ".join(f"{family.name} {family.series:,}" for family in self.largest(5) if family.series)
        return (
            f"series budget (worst case): {self.total_series:,} series, {self.total_samples:,} samples per scrape "
            f"(limits.max_series {self.max_series:,}); largest: {largest}"
        )


Domain = Callable[[Config], int]


def _accounts(config: Config) -> int:
    """`account` label values: every configured name, and every declared sub-account's id."""
    return sum(1 + len(account.sub_accounts) for account in config.accounts)


def _websocket_accounts(config: Config) -> int:
    return sum(account.websocket is not None for account in config.accounts)


def _polled_accounts(config: Config) -> int:
    return sum(account.client_id is not None for account in config.accounts) if config.poller.enabled else 0


def _sources(config: Config) -> int:
    """How records can arrive at a `run` agent: webhook always, websocket and poll where configured."""
    return 1 + (_websocket_accounts(config) > 0) + config.poller.enabled


def _pulled_sources(config: Config) -> int:
    """`zoom_qss_leader{source}`: the poller, and each account's WebSocket."""
    return config.poller.enabled + _websocket_accounts(config)


def _otlp_signals(config: Config) -> int:
    return (1 + config.otlp.logs.enabled) if config.otlp.enabled else 0


# Labels that mean the same in every family that has them.
_LABELS: Mapping[str, Domain] = {
    "account": _accounts,
    "product": lambda _: _PRODUCTS,
    "media": lambda _: _MEDIA,
    "quality": lambda _: _QUALITIES,
    "stat": lambda _: len(SUMMARY_STATS),
    "measure": lambda _: len(CPU_MEASURES),
    "notification": lambda _: len(NOTIFICATIONS),
    "source": _sources,
    "network_type": lambda _: len(NETWORK_TYPES) + 1,  # + unknown
    "site": lambda config: len(config.sites) + 1,  # + unknown (unmatched address, or no data event yet)
    "data_center": lambda config: len(DATA_CENTERS | set(config.labels.extra_data_centers)) + len(_LEAVES),
    "client_os": lambda _: len(CLIENT_OS_VALUES) + 1,  # + unknown
    "client_version": lambda _: CLIENT_VERSIONS_MAX + len(_LEAVES),
    "generation": lambda _: _GENERATIONS,
    # Detail mode's plain labels belong to the meeting or participant: more labels, not more series.
    "meeting_number": lambda _: 1,
    "topic": lambda _: 1,
    "participant_name": lambda _: 1,
}

# Labels whose values only occur together, counted once as a group (all of a group's labels present).
_GROUPS: tuple[tuple[frozenset[str], Domain], ...] = (
    (_STREAM, lambda _: len(STREAM_TYPES)),
    (frozenset({"leg", "direction"}), lambda _: len(PHONE_LEGS) * len(PHONE_DIRECTIONS)),
    (frozenset({"field", "reason"}), lambda _: len(PARSE_ERRORS)),
    (frozenset({"version", "implementation", "major", "minor", "patchlevel"}), lambda _: 1),  # python_info
    # Detail mode: a shown participant is one (account, product, meeting); a shown meeting one (account, product).
    (
        frozenset({"account", "product", "meeting", "participant"}),
        lambda config: len(config.detail.allowlist) + config.detail.worst.participants,
    ),
    (frozenset({"account", "product", "meeting"}), lambda config: config.detail.worst.meetings),
)


def _constant(size: int) -> Domain:
    return lambda _: size


# Labels whose values depend on the family (outcomes, reasons, the accounts a source serves); a group of
# labels (a frozenset) is counted once, as in _GROUPS.
_FAMILY_LABELS: Mapping[str, Mapping[str | frozenset[str], Domain]] = {
    "zoom_qss_webhook_requests_total": {"outcome": _constant(len(WEBHOOK_OUTCOMES))},
    "zoom_qss_listener_rejections_total": {
        "listener": _constant(len(LISTENERS)),
        "reason": _constant(len(LISTENER_REJECTIONS)),
    },
    "zoom_qss_events_total": {"event": _constant(len(KNOWN_EVENTS) + len(CONTEXT_EVENTS))},
    "zoom_qss_unmeasured_values_total": {"field": _constant(len(UNMEASURED_FIELDS))},
    "zoom_qss_build_info": {"version": _constant(1)},
    "zoom_qss_websocket_connected": {"account": _websocket_accounts},
    "zoom_qss_websocket_connects_total": {"account": _websocket_accounts},
    "zoom_qss_websocket_connect_failures_total": {
        "account": _websocket_accounts,
        "reason": _constant(len(WEBSOCKET_CONNECT_FAILURES)),
    },
    "zoom_qss_websocket_reconnects_total": {
        "account": _websocket_accounts,
        "reason": _constant(len(WEBSOCKET_RECONNECTS)),
    },
    "zoom_qss_websocket_messages_total": {
        "account": _websocket_accounts,
        "module": _constant(len(WEBSOCKET_MODULES)),
    },
    "zoom_qss_websocket_events_total": {
        "account": _websocket_accounts,
        "outcome": _constant(len(WEBSOCKET_EVENT_OUTCOMES)),
    },
    "zoom_qss_websocket_last_message_timestamp_seconds": {"account": _websocket_accounts},
    "zoom_qss_api_requests_total": {
        "account": _polled_accounts,
        "endpoint": _constant(_ENDPOINTS),
        "code": _constant(_HTTP_STATUSES),
    },
    "zoom_qss_api_rate_limited_total": {"account": _polled_accounts, "limit_type": _constant(len(LIMIT_TYPES))},
    "zoom_qss_oauth_token_requests_total": {"account": _polled_accounts, "outcome": _constant(len(TOKEN_OUTCOMES))},
    "zoom_qss_api_daily_budget_used": {"account": _polled_accounts},
    "zoom_qss_api_daily_budget_limit": {"account": _polled_accounts},
    "zoom_qss_poll_instances_total": {"account": _polled_accounts, "outcome": _constant(len(POLL_OUTCOMES))},
    "zoom_qss_poll_backlog": {"account": _polled_accounts},
    "zoom_qss_poll_oldest_pending_age_seconds": {"account": _polled_accounts},
    "zoom_qss_otlp_exports_total": {"signal": _otlp_signals, "outcome": _constant(_OTLP_OUTCOMES)},
    "zoom_qss_otlp_last_export_duration_seconds": {"signal": _otlp_signals},
    "zoom_qss_otlp_last_success_timestamp_seconds": {"signal": _otlp_signals},
    "zoom_qss_leader": {"source": _pulled_sources},
    "zoom_qss_leader_changes_total": {"source": _pulled_sources, "change": _constant(len(LEADER_CHANGES))},
    "zoom_qss_detail_series_refused_total": {"kind": _constant(_DETAIL_KINDS)},
    "zoom_qss_detail_tracked": {"kind": _constant(_DETAIL_KINDS)},
    "zoom_qss_config_reloads_total": {"outcome": _constant(len(RELOAD_OUTCOMES))},
    "zoom_qss_state_checkpoints_total": {"outcome": _constant(len(CHECKPOINT_OUTCOMES))},
    "zoom_qss_state_restore": {"outcome": _constant(len(RESTORE_OUTCOMES))},
    "zoom_qss_state_local_decisions_total": {"reason": _constant(len(LOCAL_DECISION_REASONS))},
}

# Families without labels that exist only with a feature.
_PRESENT: Mapping[str, Callable[[Config], bool]] = {
    "zoom_qss_otlp_log_records_dropped_total": lambda config: config.otlp.enabled and config.otlp.logs.enabled,
    "zoom_qss_state_shared_up": lambda config: config.state.backend == "redis",  # set once Redis is tried
}


def _samples_per_series(family: AnyFamily) -> int:
    """Exposition lines per series: a histogram's buckets, +Inf, _sum and _count; one otherwise."""
    return len(family.buckets) + 3 if isinstance(family, HistogramFamily) else 1


def _label_product(
    config: Config, name: str, labelnames: Sequence[str], families: int, unknown: list[str]
) -> int | None:
    """The family's label product; None (and `unknown` extended) when a label has no declared value set."""
    left = set(labelnames)
    size = 1
    # A family-specific meaning wins over a group (the `account` of the WebSocket families, say).
    for key, domain in _FAMILY_LABELS.get(name, {}).items():
        labels = key if isinstance(key, frozenset) else frozenset({key})
        if labels <= left:
            size *= domain(config)
            left -= labels
    for group, domain in _GROUPS:
        if group <= left:
            size *= domain(config)
            left -= group
    for label in sorted(left):
        if label == "family":  # zoom_qss_series and its drops: one series per family under the cap
            size *= families
        elif label in _LABELS:
            size *= _LABELS[label](config)
        else:
            unknown.append(f"{name}: {label}")
            return None
    return size


def series_budget(config: Config, families: Iterable[AnyFamily]) -> Budget:
    """The worst case of each family in `families` (a store's, built for `config`), in their order."""
    families = list(families)
    capped = sum(1 for family in families if not isinstance(family, CallbackFamily) or family.capped)
    unknown: list[str] = []
    budgets: list[FamilyBudget] = []
    detail_cap = config.detail.max_series
    for family in families:
        if family.name in _PRESENT and not _PRESENT[family.name](config):
            size: int | None = 0
        else:
            size = _label_product(config, family.name, family.labelnames, capped, unknown)
        if size is None:
            continue
        cap = None
        if _DETAIL_LABELS & set(family.labelnames):
            size, cap = min(size, detail_cap), _DETAIL_CAP
        budgets.append(FamilyBudget(family.name, size, size * _samples_per_series(family), cap))
    return Budget(tuple(budgets), tuple(unknown), config.limits.max_series, {_DETAIL_CAP: detail_cap})
