"""Wiring and lifecycle: builds the store, pipeline and HTTP servers from a Config, runs, drains, stops.

Both listeners are uvicorn servers on one event loop, each behind its admission guard
(server/guard.py). One SIGTERM stops both servers and every background task within one budget,
SHUTDOWN_BUDGET_SECONDS, whatever the peers do: the listeners drain for DRAIN_SECONDS (then what is
still open is aborted), the final OTLP flush gets what is left less EXIT_MARGIN_SECONDS, and
`exit_within_budget` leaves behind any export thread still waiting on an unresponsive collector.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.types import ASGIApp

from qss_exporter import __version__
from qss_exporter.budget import series_budget
from qss_exporter.catalogue import LISTENER_REJECTIONS
from qss_exporter.config import AccountConfig, Config, HostPort, changed_summary, redacted_summary
from qss_exporter.core import build_core, enrichment_labels, site_map, tenants
from qss_exporter.errors import ConfigError
from qss_exporter.leadership import LeaderFamilies, Leadership, PulledSource
from qss_exporter.lease import RedisLease
from qss_exporter.outputs.http import metrics_app
from qss_exporter.outputs.otlp import OtlpMetrics, build_otlp_metrics
from qss_exporter.outputs.otlp_logs import QosLogs, build_qos_logs
from qss_exporter.outputs.otlp_settings import build_resource
from qss_exporter.persistence import StateFile
from qss_exporter.redis_client import RedisBackend
from qss_exporter.reload import Reloader, ReloadResult
from qss_exporter.server.guard import Guard, ListenerLimits, protocol_class
from qss_exporter.server.serving import Listener, raise_open_file_limit
from qss_exporter.server.tls import ServerTls
from qss_exporter.server.web_auth import WebAuth
from qss_exporter.server.webconfig import WebConfig, load_web_config
from qss_exporter.shared_sightings import SightingsShare
from qss_exporter.shared_state import SharedState, run_sync
from qss_exporter.sources.poller import Poller, build_poller
from qss_exporter.sources.webhook import WebhookAccount, WebhookReceiver, webhook_app
from qss_exporter.sources.websocket import WebSocketSettings, WebSocketSource
from qss_exporter.zoom.oauth import TokenProvider

# enrichment_labels: re-exported, its home was here before core.py
__all__ = ["Agent", "enrichment_labels", "exit_within_budget"]

log = logging.getLogger(__name__)

SHUTDOWN_BUDGET_SECONDS = 8.0  # SIGTERM to exit, below Docker's 10 s stop timeout (docs/deploy.md)
DRAIN_SECONDS = 2.0  # requests in progress may finish; webhooks take milliseconds
EXIT_MARGIN_SECONDS = 1.0  # kept back from the OTLP flush for closing clients and exiting
OTLP_FLUSH_SECONDS = 5.0  # the final OTLP flush at most, when the budget leaves that much
STATE_SAVE_SECONDS = 3.0  # the last pipeline state save at most (50k participants: ~1 s, docs/performance.md)
HOUSEKEEPING_SECONDS = 30.0
WEB_CONFIG_CHECK_SECONDS = 1.0  # how often the web configuration and certificate files are checked
ZOOM_HTTP_TIMEOUT_SECONDS = 10.0  # every call to Zoom's OAuth endpoint
# Descriptors kept back from the webhook's connection cap: the metrics listener, outbound clients, files.
_RESERVED_DESCRIPTORS = 256

# The metrics listener serves a few scrapers and probes; its limits are fixed (docs/security.md).
METRICS_LIMITS = ListenerLimits(
    header_timeout=10.0,
    body_timeout=10.0,
    idle_timeout=75.0,
    max_header_bytes=16_384,
    max_headers=100,
    max_body_bytes=65_536,
    max_buffered_body_bytes=1_048_576,
    max_connections=128,
)


def websocket_source(account: str) -> str:
    """The `source` label of an account's WebSocket in zoom_qss_leader."""
    return f"websocket:{account}"


def webhook_accounts(config: Config) -> list[WebhookAccount]:
    return [
        WebhookAccount(account.name, tuple(secret.reveal() for secret in account.webhook_secret_token))
        for account in config.accounts
    ]


class Agent:
    """One running exporter. `extra_tasks` (the demo's simulator) run alongside; `poll=False` leaves the poller off.

    `reload_from` re-reads and validates the configuration file (validation.py) for SIGHUP and
    `POST /-/reload`; without it (the demo, tests) a reload is refused.
    """

    def __init__(
        self,
        config: Config,
        clock: Callable[[], float] = time.time,
        *,
        poll: bool = True,
        reload_from: Callable[[], tuple[Config, Sequence[str]]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        core = build_core(config, clock)
        self.store, self.catalogue, self.pipeline, self.detail = core.store, core.catalogue, core.pipeline, core.detail
        self._directory = core.directory
        state = config.state
        self.state_file: StateFile | None = None
        if state.dir is not None:  # the pipeline's state saved over restarts (persistence.py)
            self.state_file = StateFile(
                state.dir,
                self.pipeline.stateful,
                self._directory.labels,
                state.checkpoint_interval_seconds,
                core.state_families,
                clock,
            )
        otlp_self_metrics, leader_families = core.otlp_self_metrics, core.leader_families
        self.budget = series_budget(config, self.store.families())
        self.reloader = Reloader(reload_from or _no_file, config, self._apply, core.reload_families, clock)
        self._reload_requested = asyncio.Event()
        self.otlp: OtlpMetrics | None = None
        self.otlp_logs: QosLogs | None = None
        if config.otlp.enabled:
            resource = build_resource(config.otlp, os.environ)
            self.otlp = build_otlp_metrics(config.otlp, self.store, otlp_self_metrics, resource, os.environ, clock)
            if config.otlp.logs.enabled:
                labels = list(self._directory.labels)
                self.otlp_logs = build_qos_logs(config.otlp, labels, otlp_self_metrics, resource, os.environ, clock)
                self.pipeline.add_qos_listener(self.otlp_logs.on_qos)
        hook = config.webhook
        self.receiver = WebhookReceiver(
            self.pipeline,
            self.catalogue.webhook_requests,
            webhook_accounts(config),
            timestamp_tolerance=hook.timestamp_tolerance_seconds,
            max_body_bytes=hook.max_body_bytes,
            shed_after=hook.shed_after_seconds,
            insecure_skip_verification=hook.insecure_skip_verification,
            clock=clock,
            path=hook.path,
        )
        self._zoom_http: httpx.AsyncClient | None = None  # opened on first use, inside the event loop
        self.poller: Poller | None = (
            build_poller(config, self.pipeline, self.catalogue.api, clock=clock) if poll else None
        )
        self.websockets = [
            self._websocket_source(account) for account in config.accounts if account.websocket is not None
        ]
        path = config.listen.metrics_web_config_file
        self.web_config: WebConfig | None = load_web_config(path) if path else None
        self.tls: ServerTls | None = None
        self.web_auth: WebAuth | None = None
        self.redis = RedisBackend(config.state.redis) if config.state.backend == "redis" else None
        self.identity = f"{socket.gethostname()}:{os.getpid()}"  # this replica, in Redis
        if self.redis is not None:
            redis, pipeline = config.state.redis, config.pipeline
            self.pipeline.shared = SharedState(
                self.redis.client,
                core.shared_families,
                key_prefix=redis.key_prefix,
                identity=f"{self.identity}:{secrets.token_hex(4)}",  # unique even for agents sharing a process
                dedupe_window=pipeline.dedupe_window_seconds,
                enrichment_ttl=pipeline.enrichment_ttl_seconds,
                activity_window=pipeline.activity_window_seconds,
                call_timeout=redis.call_timeout_ms / 1000,
                retry_seconds=redis.sync_seconds,
                clock=clock,
            )
        self.sightings: SightingsShare | None = None  # the poller's sightings from every replica (Redis)
        self.leadership = self._leadership(leader_families)
        self._servers: dict[str, Listener] = {}
        self._ready = False
        self._stopping = asyncio.Event()
        self.stop_started: float | None = None  # time.monotonic() of the first stop()

    def _apply(self, config: Config) -> None:
        """Put a reloaded configuration in place (reload.py checked it changes only live keys).

        Synchronous, so atomic for every request: the event loop runs nothing in between. The state the
        parts hold (dedupe, enrichment, activity, detail mode, learned sub-accounts, series) stays.
        """
        hook = config.webhook
        self.receiver.reconfigure(
            webhook_accounts(config),
            timestamp_tolerance=hook.timestamp_tolerance_seconds,
            shed_after=hook.shed_after_seconds,
        )
        self.pipeline.accounts = self.pipeline.accounts.reconfigured(tenants(config))
        self._directory.reconfigure(site_map(config), config.labels.extra_data_centers)
        self.store.max_series = config.limits.max_series
        if config.log.level != self.config.log.level:
            logging.getLogger().setLevel(config.log.level.upper())
        self.config = config
        budget = series_budget(config, self.store.families())
        if budget != self.budget:
            self.budget = budget
            self._log_budget()

    def _log_budget(self) -> None:
        budget = self.budget
        log.info(
            "%s",
            budget.summary(),
            extra={"fields": {"budget": {family.name: family.series for family in budget.families if family.series}}},
        )
        for warning in budget.warnings():
            log.warning("%s", warning)

    async def reload(self) -> ReloadResult:
        """Re-read the configuration file and apply it, or keep the running one (reload.py)."""
        return await self.reloader.reload()

    def request_reload(self) -> None:
        """Ask for a reload (safe from a signal handler); requests that arrive during one make one more."""
        self._reload_requested.set()

    async def _reload_on_request(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            await self.reloader.reload()

    def webhook_limits(self, open_files: int) -> ListenerLimits:
        hook = self.config.webhook
        connections = min(hook.max_connections, max(16, open_files - _RESERVED_DESCRIPTORS))
        if connections < hook.max_connections:
            log.warning(
                "webhook.max_connections %d is more than the open-file limit allows; using %d",
                hook.max_connections,
                connections,
            )
        return ListenerLimits(
            header_timeout=hook.header_timeout_seconds,
            body_timeout=hook.body_timeout_seconds,
            idle_timeout=hook.idle_timeout_seconds,
            max_header_bytes=hook.max_header_bytes,
            max_headers=hook.max_headers,
            max_body_bytes=hook.max_body_bytes,
            max_buffered_body_bytes=hook.max_buffered_body_bytes,
            max_connections=connections,
        )

    def _guard(self, name: str, limits: ListenerLimits, admission: Any = None) -> Guard:
        family = self.catalogue.listener_rejections
        handles = {reason: family.handle((name, reason)) for reason in LISTENER_REJECTIONS}

        def count(reason: str) -> None:
            handles[reason].add(1.0, self.clock())

        return Guard(name, limits, admission, count)

    def _server(self, app: ASGIApp, address: HostPort, guard: Guard, tls: ServerTls | None = None) -> Listener:
        context = tls.context if tls is not None else None
        return Listener(
            uvicorn.Config(
                app,
                host=address.host,
                port=address.port,
                ssl_context_factory=(lambda _config, _default: context) if context is not None else None,
                http=protocol_class(guard),
                ws="none",
                lifespan="off",
                log_config=None,
                access_log=False,
                server_header=False,
                timeout_keep_alive=math.ceil(guard.limits.idle_timeout),
                backlog=4096,
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

    def _leadership(self, families: LeaderFamilies) -> Leadership:
        """The pulled sources, each run on the one replica holding its lease (all here with the local backend)."""
        sources = [PulledSource(websocket_source(ws.settings.account), ws.run) for ws in self.websockets]
        if self.poller is not None:
            poller = self.poller

            async def poller_leading(leading: bool) -> None:
                poller.observing = leading
                if not leading:
                    await poller.close_state()

            async def poller_run() -> None:
                share, lease = self.sightings, leases.get("poller")
                if share is None or lease is None:
                    await poller.run()
                    return
                async with asyncio.TaskGroup() as group:  # the leader takes every replica's sightings
                    group.create_task(poller.run())
                    group.create_task(share.take(lease))

            sources.insert(0, PulledSource("poller", poller_run, poller_leading))
        leases: dict[str, RedisLease] = {}
        if self.redis is None:
            return Leadership(sources, families)
        client, state, identity = self.redis.client, self.config.state, self.identity
        if self.poller is not None:
            self.poller.observing = False  # until this replica holds the poller's lease
            self.sightings = SightingsShare(
                client,
                self.poller,
                key_prefix=state.redis.key_prefix,
                window=self.config.pipeline.dedupe_window_seconds,
                timeout=state.redis.connect_timeout_seconds + state.redis.command_timeout_seconds,
                clock=self.clock,
            )
            self.pipeline.add_record_listener(self.sightings.observe)

        def lease(name: str) -> RedisLease:
            leases[name] = RedisLease(
                client,
                name,
                key_prefix=state.redis.key_prefix,
                lease_seconds=state.leader.lease_seconds,
                identity=identity,
            )
            return leases[name]

        return Leadership(
            sources,
            families,
            lease,
            lease_seconds=state.leader.lease_seconds,
            renew_seconds=state.leader.renew_seconds,
        )

    @property
    def ready(self) -> bool:
        """Both listeners up; with the Redis backend, Redis answered once since the start; and, with
        websocket.readyz_requires_connection, every WebSocket that runs on this replica connected."""
        if self.redis is not None and not self.redis.reached:
            return False
        if self.config.websocket.readyz_requires_connection and not all(
            ws.connected for ws in self.websockets if self.leadership.leading(websocket_source(ws.settings.account))
        ):
            return False
        return self._ready

    def url(self, listener: str) -> str:
        """Base URL of a started listener ("webhook" or "metrics"), with the real port."""
        server = self._servers[listener]
        host = server.config.host
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)
        scheme = "https" if server.config.is_ssl else "http"
        return f"{scheme}://{host}:{server.port}"

    def stop(self) -> None:
        """Begin a graceful shutdown (safe to call from a signal handler, more than once)."""
        if self.stop_started is None:
            self.stop_started = time.monotonic()
        self._stopping.set()
        for server in self._servers.values():
            if server.drain_deadline is None:
                server.drain_deadline = self.stop_started + DRAIN_SECONDS
            server.should_exit = True

    @property
    def exit_deadline(self) -> float:
        """time.monotonic() by which the process must have exited (SHUTDOWN_BUDGET_SECONDS after stop())."""
        started = self.stop_started if self.stop_started is not None else time.monotonic()
        return started + SHUTDOWN_BUDGET_SECONDS

    async def serve(
        self,
        extra_tasks: Sequence[Callable[[Agent], Coroutine[Any, Any, None]]] = (),
        on_ready: Callable[[Agent], None] | None = None,
        install_signal_handlers: bool = False,
    ) -> None:
        config = self.config
        open_files = raise_open_file_limit()
        webhook_guard = self._guard("webhook", self.webhook_limits(open_files), self.receiver)
        webhook = self._server(webhook_app(self.receiver, config.webhook.path), config.listen.webhook, webhook_guard)
        metrics_guard = self._guard("metrics", METRICS_LIMITS)
        metrics_asgi: ASGIApp = metrics_app(self.store, lambda: self.ready, self.reload)
        if self.web_config is not None:
            # Everything on the metrics listener sits behind the authentication, as in exporter-toolkit.
            self.web_auth = WebAuth(metrics_asgi, self.web_config.auth)
            metrics_asgi = self.web_auth
            if self.web_config.tls is not None:
                self.tls = ServerTls(self.web_config.tls)
                metrics_guard.peer_check = self.tls.peer_allowed
        metrics = self._server(metrics_asgi, config.listen.metrics, metrics_guard, self.tls)
        self._servers = {"webhook": webhook, "metrics": metrics}
        if config.webhook.insecure_skip_verification:
            log.warning(
                "webhook signature verification is OFF (webhook.insecure_skip_verification): local testing only"
            )
        log.info(
            "qss-exporter %s starting",
            __version__,
            extra={
                "fields": {"config": redacted_summary(config)},  # JSON format: the whole effective configuration
                "plain": "configuration: " + orjson.dumps(changed_summary(config)).decode(),  # plain: what differs
            },
        )
        self._log_budget()
        if install_signal_handlers:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)  # as Prometheus, Alertmanager, blackbox
        state_file = self.state_file
        if state_file is not None and await asyncio.to_thread(state_file.open):
            await state_file.restore()  # before the listeners: the first event finds what was known
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
            background = [group.create_task(self._housekeeping()), group.create_task(self._reload_on_request())]
            if self.web_config is not None:
                background.append(group.create_task(self._watch_web_config(self.web_config)))
            background += [group.create_task(task(self)) for task in extra_tasks]
            # `is not None`: the log output has a length (its queue), so it is falsy while nothing is queued.
            outputs = [output for output in (self.otlp, self.otlp_logs) if output is not None]
            background += [group.create_task(output.run()) for output in outputs]
            if self.detail is not None:  # the worst-N ranking, every detail.worst.interval_seconds
                background.append(group.create_task(self.detail.run(self.clock)))
            # The poller and the WebSockets run where this replica holds their lease (always, on one replica).
            background.append(group.create_task(self.leadership.run()))
            if self.redis is not None:
                background.append(group.create_task(self.redis.reach()))
            if state_file is not None and state_file.usable:
                background.append(group.create_task(state_file.run()))
            if self.sightings is not None:
                background.append(group.create_task(self.sightings.push()))
            shared, pipeline = self.pipeline.shared, self.pipeline
            if shared is not None:
                every = config.state.redis.sync_seconds
                background.append(
                    group.create_task(
                        run_sync(shared, pipeline.participants, pipeline.calls, pipeline.time, self._directory, every)
                    )
                )
            if self._ready:
                await self._stopping.wait()
            self._ready = False
            self.stop()
            for task in background:
                task.cancel()
        await self._save_state()
        await self._close_outputs()
        if self.web_auth is not None:
            self.web_auth.close()
        log.info("stopped")

    async def _save_state(self) -> None:
        """The last checkpoint, once the listeners take no more events, within STATE_SAVE_SECONDS of the budget."""
        state_file = self.state_file
        if state_file is None or not state_file.usable:
            return
        left = self.exit_deadline - EXIT_MARGIN_SECONDS - time.monotonic()
        try:
            await asyncio.wait_for(state_file.save(paced=False), min(STATE_SAVE_SECONDS, max(0.1, left)))
        except TimeoutError:
            log.warning(
                "state.dir: the last checkpoint did not finish within the shutdown budget; the one before stays"
            )
        state_file.close()

    async def _close_outputs(self) -> None:
        """The final OTLP flush and the clients, within what is left of the shutdown budget."""
        left = self.exit_deadline - EXIT_MARGIN_SECONDS - time.monotonic()
        flush = min(OTLP_FLUSH_SECONDS, max(0.1, left))
        outputs = [output.close(flush) for output in (self.otlp, self.otlp_logs) if output is not None]
        if outputs:
            await asyncio.gather(*outputs)
        closing: list[Coroutine[Any, Any, None]] = []
        if self._zoom_http is not None:
            closing.append(self._zoom_http.aclose())
        if self.poller is not None:
            closing.append(self.poller.close())
        if self.redis is not None:
            closing.append(self.redis.close())
        if closing:
            try:
                await asyncio.wait_for(asyncio.gather(*closing), max(0.1, self.exit_deadline - time.monotonic() - 0.5))
            except TimeoutError:
                log.warning("closing the Zoom and Redis clients did not finish within the shutdown budget")

    async def _watch_web_config(self, current: WebConfig) -> None:
        """Pick up changed certificate files and a changed web configuration file, as exporter-toolkit does."""
        stamp = _file_identity(current.path)
        while True:
            await asyncio.sleep(WEB_CONFIG_CHECK_SECONDS)
            if self.tls is not None:
                self.tls.reload_if_changed()
            now = _file_identity(current.path)
            if now == stamp:
                continue
            stamp = now
            try:
                changed = load_web_config(current.path)
            except ConfigError as error:
                log.warning("metrics web configuration not reloaded: %s", "; ".join(error.problems))
                continue
            if self.web_auth is not None:
                self.web_auth.settings = changed.auth
            if changed.tls != current.tls:
                log.warning("metrics web configuration: tls_server_config changed; restart to apply it")
            log.info("metrics web configuration reloaded")
            current = changed

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            self.pipeline.expire()


def _no_file() -> tuple[Config, Sequence[str]]:
    raise ConfigError(["no configuration file to reload: this agent runs on a built-in configuration"])


def _file_identity(path: os.PathLike[str]) -> tuple[int, int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def exit_within_budget(agent: Agent) -> None:
    """After `serve` returned: wait for other threads until the budget ends, then exit regardless.

    An OTLP export blocked on a collector that never answers keeps its worker thread (the SDK's
    request timeout, 10 s by default), and the interpreter would wait for it at exit. Its data is
    counted as failed already; leaving the thread behind keeps the exit within the budget.
    """
    if agent.stop_started is None:
        return
    deadline = agent.exit_deadline
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [
        t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon and t.is_alive()
    ]
    if stuck:
        log.warning("exiting with %d export thread(s) still waiting on their peer: %s", len(stuck), ", ".join(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
