"""The store and everything that records into it, built for one configuration: no listener, no I/O.

`build_core` creates the metric store, every family on it (the catalogue, the pipeline's computed
families, detail mode, the OTLP, leadership, reload and runtime self-metrics) and the pipeline that
records into them. The agent (app.py) runs on one and adds the listeners and background work;
`check-config` builds one to evaluate the series budget over the very families `run` would expose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from qss_exporter.budget import Budget, series_budget
from qss_exporter.catalogue import Catalogue
from qss_exporter.config import Config
from qss_exporter.dedupe import DedupeWindow, ParticipantHistory
from qss_exporter.detail import DetailSettings, DetailTracker
from qss_exporter.enrichment import ENRICHMENT_LABELS, ParticipantDirectory, SiteMap
from qss_exporter.leadership import LeaderFamilies
from qss_exporter.outputs.otlp import OtlpSelfMetrics
from qss_exporter.persistence import StateFamilies
from qss_exporter.pipeline import Pipeline
from qss_exporter.reload import ReloadFamilies
from qss_exporter.runtime import RuntimeMetrics
from qss_exporter.shared_state import SharedFamilies
from qss_exporter.store import Store
from qss_exporter.tenancy import Tenancy, Tenant

__all__ = [
    "Core",
    "build_core",
    "config_budget",
    "detail_settings",
    "enrichment_labels",
    "site_map",
    "tenants",
]


def enrichment_labels(config: Config) -> list[str]:
    enabled = config.labels.model_dump()
    return [name for name in ENRICHMENT_LABELS if enabled.get(name) and (name != "site" or config.sites)]


def detail_settings(config: Config) -> DetailSettings:
    detail = config.detail
    if detail.hash_key is None:
        raise ValueError("detail mode needs detail.hash_key")  # DetailConfig rejects this already
    return DetailSettings(
        key=detail.hash_key.reveal().encode(),
        window=config.pipeline.activity_window_seconds,
        allowlist=detail.allowlist,
        worst_participants=detail.worst.participants,
        worst_meetings=detail.worst.meetings,
        score=detail.worst.score,
        interval=detail.worst.interval_seconds,
        max_series=detail.max_series,
        plain_meeting_number=detail.plain.meeting_number,
        plain_topic=detail.plain.topic,
        plain_participant_name=detail.plain.participant_name,
    )


def site_map(config: Config) -> SiteMap:
    return SiteMap((site.name, [str(cidr) for cidr in site.cidrs]) for site in config.sites)


def tenants(config: Config) -> list[Tenant]:
    """The account table's entries: who may speak for which Zoom account ids (tenancy.py)."""
    return [
        Tenant(account.name, account.account_id, account.sub_accounts, account.undeclared_sub_accounts == "master")
        for account in config.accounts
    ]


@dataclass(frozen=True, slots=True)
class Core:
    """The store, every family on it and what records into it, for one configuration: no listener, no I/O.

    The agent runs on one; `check-config` builds one to evaluate the series budget over the very
    families the agent would expose (budget.py).
    """

    store: Store
    catalogue: Catalogue
    directory: ParticipantDirectory
    pipeline: Pipeline
    detail: DetailTracker | None
    otlp_self_metrics: OtlpSelfMetrics
    leader_families: LeaderFamilies
    reload_families: ReloadFamilies
    state_families: StateFamilies
    shared_families: SharedFamilies


def build_core(config: Config, clock: Callable[[], float] = time.time) -> Core:
    store = Store(config.limits.max_series, clock)
    labels = enrichment_labels(config)
    otlp = config.otlp
    exponential = otlp.exponential_scale if otlp.enabled and otlp.histograms == "exponential" else None
    catalogue = Catalogue(store, labels, config.histograms.buckets, config.limits.series_ttl_seconds, exponential)
    directory = ParticipantDirectory(
        labels,
        site_map(config),
        config.pipeline.enrichment_ttl_seconds,
        config.pipeline.enrichment_max_entries,
        extra_data_centers=config.labels.extra_data_centers,
        value_ttl=config.limits.series_ttl_seconds,
    )
    window, max_entries = config.pipeline.dedupe_window_seconds, config.pipeline.dedupe_max_entries
    pipeline = Pipeline(
        store,
        catalogue,
        directory,
        DedupeWindow(window, max_entries, clock()),
        ParticipantHistory(window, max_entries),
        config.pipeline.activity_window_seconds,
        Tenancy(tenants(config)),
        clock,
    )
    detail: DetailTracker | None = None
    if config.detail.enabled:
        detail = DetailTracker(detail_settings(config))
        detail.register(store, clock)
        pipeline.detail = detail
    otlp_self_metrics = OtlpSelfMetrics.register(store)
    leader_families = LeaderFamilies.register(store)
    reload_families = ReloadFamilies.register(store, clock())
    state_families = StateFamilies.register(store)  # the saved pipeline state (persistence.py)
    shared_families = SharedFamilies.register(store)
    RuntimeMetrics().register(store)  # process_* and python_*: read at scrape / export time only
    catalogue.add_store_metrics()  # last: zoom_qss_series lists every family under the cap, these too
    return Core(
        store,
        catalogue,
        directory,
        pipeline,
        detail,
        otlp_self_metrics,
        leader_families,
        reload_families,
        state_families,
        shared_families,
    )


def config_budget(config: Config) -> Budget:
    """The worst-case series of every family the agent would expose with `config` (docs/metrics.md)."""
    return series_budget(config, build_core(config).store.families())
