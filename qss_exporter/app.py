"""Wiring and lifecycle: builds the store, pipeline and HTTP servers from a Config, runs, drains, stops.

Both listeners are uvicorn servers on one event loop. Shutdown follows uvicorn's own order (stop
accepting, let in-flight requests finish under a deadline, then cancel), driven by our signal
handler so that one SIGTERM stops both servers and every background task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from qss_exporter import __version__
from qss_exporter.catalogue import Catalogue
from qss_exporter.config import AccountConfig, Config, HostPort, redacted_summary
from qss_exporter.dedupe import DedupeWindow, ParticipantHistory
from qss_exporter.detail import DetailSettings, DetailTracker
from qss_exporter.enrichment import ENRICHMENT_LABELS, ParticipantDirectory, SiteMap
from qss_exporter.outputs.http import metrics_app
from qss_exporter.outputs.otlp import OtlpMetrics, OtlpSelfMetrics, build_otlp_metrics
from qss_exporter.outputs.otlp_logs import QosLogs, build_qos_logs
from qss_exporter.outputs.otlp_settings import build_resource
from qss_exporter.pipeline import Pipeline
from qss_exporter.sources.poller import Poller, build_poller
from qss_exporter.sources.webhook import WebhookAccount, WebhookReceiver, webhook_app
from qss_exporter.sources.websocket import WebSocketSettings, WebSocketSource
from qss_exporter.store import Store
from qss_exporter.tenancy import Tenancy, Tenant
from qss_exporter.zoom.oauth import TokenProvider

__all__ = ["Agent"]

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 8.0  # below Kubernetes' and Docker's default 10 s stop timeout
HOUSEKEEPING_SECONDS = 30.0
OTLP_FLUSH_SECONDS = 5.0  # the final OTLP flush at shutdown, after the listeners have drained
ZOOM_HTTP_TIMEOUT_SECONDS = 10.0  # every call to Zoom's OAuth endpoint


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the Agent, which runs several servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    @property
    def port(self) -> int:
        return int(self.servers[0].sockets[0].getsockname()[1])


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


class Agent:
    """One running exporter. `extra_tasks` (the demo's simulator) run alongside; `poll=False` leaves the poller off."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.time, *, poll: bool = True) -> None:
        self.config = config
        self.clock = clock
        self.store = Store(config.limits.max_series, clock)
        labels = enrichment_labels(config)
        otlp = config.otlp
        exponential = otlp.exponential_scale if otlp.enabled and otlp.histograms == "exponential" else None
        self.catalogue = Catalogue(
            self.store, labels, config.histograms.buckets, config.limits.series_ttl_seconds, exponential
        )
        sites = SiteMap((site.name, [str(cidr) for cidr in site.cidrs]) for site in config.sites)
        directory = ParticipantDirectory(
            labels,
            sites,
            config.pipeline.enrichment_ttl_seconds,
            config.pipeline.enrichment_max_entries,
            extra_data_centers=config.labels.extra_data_centers,
            value_ttl=config.limits.series_ttl_seconds,
        )
        window, max_entries = config.pipeline.dedupe_window_seconds, config.pipeline.dedupe_max_entries
        dedupe = DedupeWindow(window, max_entries, clock())
        history = ParticipantHistory(window, max_entries)
        self.pipeline = Pipeline(
            self.store,
            self.catalogue,
            directory,
            dedupe,
            history,
            config.pipeline.activity_window_seconds,
            Tenancy(
                [
                    Tenant(
                        account.name,
                        account.account_id,
                        account.sub_accounts,
                        account.undeclared_sub_accounts == "master",
                    )
                    for account in config.accounts
                ]
            ),
            clock,
        )
        self.detail: DetailTracker | None = None
        if config.detail.enabled:
            self.detail = DetailTracker(detail_settings(config))
            self.detail.register(self.store, clock)
            self.pipeline.detail = self.detail
        otlp_self_metrics = OtlpSelfMetrics.register(self.store)
        self.catalogue.add_store_metrics()
        self.otlp: OtlpMetrics | None = None
        self.otlp_logs: QosLogs | None = None
        if config.otlp.enabled:
            resource = build_resource(config.otlp, os.environ)
            self.otlp = build_otlp_metrics(config.otlp, self.store, otlp_self_metrics, resource, os.environ, clock)
            if config.otlp.logs.enabled:
                self.otlp_logs = build_qos_logs(config.otlp, labels, otlp_self_metrics, resource, os.environ, clock)
                self.pipeline.add_qos_listener(self.otlp_logs.on_qos)
        hook = config.webhook
        self.receiver = WebhookReceiver(
            self.pipeline,
            self.catalogue.webhook_requests,
            [
                WebhookAccount(account.name, tuple(secret.reveal() for secret in account.webhook_secret_token))
                for account in config.accounts
            ],
            timestamp_tolerance=hook.timestamp_tolerance_seconds,
            max_body_bytes=hook.max_body_bytes,
            max_in_flight=hook.max_in_flight,
            insecure_skip_verification=hook.insecure_skip_verification,
            clock=clock,
        )
        self._zoom_http: httpx.AsyncClient | None = None  # opened on first use, inside the event loop
        self.poller: Poller | None = (
            build_poller(config, self.pipeline, self.catalogue.api, clock=clock) if poll else None
        )
        self.websockets = [
            self._websocket_source(account) for account in config.accounts if account.websocket is not None
        ]
        self._servers: dict[str, _Server] = {}
        self._ready = False
        self._stopping = asyncio.Event()

    def _server(self, app: ASGIApp, address: HostPort) -> _Server:
        return _Server(
            uvicorn.Config(
                app,
                host=address.host,
                port=address.port,
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_SECONDS),
            )
        )

    def _websocket_source(self, account: AccountConfig) -> WebSocketSource:
        subscription, shared = account.websocket, self.config.websocket
        client_id, client_secret = account.client_id, account.client_secret
        # AccountConfig guarantees both credentials whenever a websocket is configured.
        assert subscription is not None
        assert client_id is not None
        assert client_secret is not None
        providers: dict[str, TokenProvider] = {}

        def tokens(grant: str) -> TokenProvider:
            if self._zoom_http is None:
                self._zoom_http = httpx.AsyncClient(timeout=ZOOM_HTTP_TIMEOUT_SECONDS)
            if grant not in providers:
                providers[grant] = TokenProvider(
                    self._zoom_http,
                    self.config.zoom.oauth_token_url,
                    account.account_id,
                    client_id,
                    client_secret.reveal(),
                    clock=self.clock,
                    grant_type=grant,
                )
            return providers[grant]

        settings = WebSocketSettings(
            account.name,
            subscription.subscription_id,
            subscription.url,
            subscription.grant_type,
            shared.heartbeat_interval_seconds,
            shared.max_frame_bytes,
            shared.connect_timeout_seconds,
            shared.reconnect_min_seconds,
            shared.reconnect_max_seconds,
            shared.reconnect_on_token_expiry,
        )
        return WebSocketSource(settings, tokens, self.pipeline, self.catalogue.websocket, clock=self.clock)

    @property
    def ready(self) -> bool:
        """Both listeners up; and, with websocket.readyz_requires_connection, every WebSocket connected."""
        if self.config.websocket.readyz_requires_connection and not all(ws.connected for ws in self.websockets):
            return False
        return self._ready

    def url(self, listener: str) -> str:
        """Base URL of a started listener ("webhook" or "metrics"), with the real port."""
        server = self._servers[listener]
        host = server.config.host
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
        return f"http://{host}:{server.port}"

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler, more than once)."""
        self._stopping.set()
        for server in self._servers.values():
            server.should_exit = True

    async def serve(
        self,
        extra_tasks: Sequence[Callable[[Agent], Coroutine[Any, Any, None]]] = (),
        on_ready: Callable[[Agent], None] | None = None,
        install_signal_handlers: bool = False,
    ) -> None:
        config = self.config
        webhook = self._server(webhook_app(self.receiver, config.webhook.path), config.listen.webhook)
        metrics = self._server(metrics_app(self.store, lambda: self.ready), config.listen.metrics)
        self._servers = {"webhook": webhook, "metrics": metrics}
        if config.webhook.insecure_skip_verification:
            log.warning(
                "webhook signature verification is OFF (webhook.insecure_skip_verification): local testing only"
            )
        log.info(
            "qss-exporter %s starting",
            __version__,
            extra={"fields": {"config": redacted_summary(config)}},
        )
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        async with asyncio.TaskGroup() as group:
            for server in (webhook, metrics):
                group.create_task(server.serve())
            while not all(server.started for server in (webhook, metrics)):
                if any(server.should_exit for server in (webhook, metrics)) or self._stopping.is_set():
                    break
                await asyncio.sleep(0.01)
            else:
                self._ready = True
                log.info(
                    "listening: webhook %s%s, metrics %s/metrics",
                    self.url("webhook"),
                    config.webhook.path,
                    self.url("metrics"),
                )
                if on_ready is not None:
                    on_ready(self)
            background = [group.create_task(self._housekeeping())]
            background += [group.create_task(task(self)) for task in extra_tasks]
            background += [group.create_task(output.run()) for output in (self.otlp, self.otlp_logs) if output]
            background += [group.create_task(source.run()) for source in self.websockets]
            if self.poller is not None:
                background.append(group.create_task(self.poller.run()))
            if self._ready:
                await self._stopping.wait()
            self._ready = False
            self.stop()
            for task in background:
                task.cancel()
        for output in (self.otlp, self.otlp_logs):
            if output is not None:
                await output.close(OTLP_FLUSH_SECONDS)
        if self._zoom_http is not None:
            await self._zoom_http.aclose()
        if self.poller is not None:
            await self.poller.close()
        log.info("stopped")

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            self.pipeline.expire()
