"""The metrics listener: /metrics, /healthz, /readyz, `POST /-/reload` and a small landing page linking them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from qss_exporter import __version__
from qss_exporter.outputs.prometheus import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, negotiate, render
from qss_exporter.store import Store

__all__ = ["ReloadOutcome", "metrics_app"]

_LANDING = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>qss-exporter</title></head>
<body>
<h1>qss-exporter {__version__}</h1>
<p>Zoom Quality of Service Subscription data as Prometheus metrics.</p>
<ul>
<li><a href="metrics">metrics</a></li>
<li><a href="healthz">healthz</a> (alive)</li>
<li><a href="readyz">readyz</a> (listeners up, configuration loaded; with state.backend redis, Redis answered)</li>
<li><code>POST /-/reload</code>: re-read the configuration file (as SIGHUP does)</li>
</ul>
</body></html>
"""


class ReloadOutcome(Protocol):
    """What a configuration reload did (reload.py's ReloadResult)."""

    @property
    def applied(self) -> bool: ...

    @property
    def lines(self) -> Sequence[str]: ...


def metrics_app(
    store: Store, ready: Callable[[], bool], reload: Callable[[], Awaitable[ReloadOutcome]] | None = None
) -> Starlette:
    """The metrics listener's routes; `reload` serves `POST /-/reload` (GET answers 405, as in Prometheus)."""

    async def metrics(request: Request) -> Response:
        openmetrics = negotiate(request.headers.get("accept"))
        store.now = store.clock()
        body = render(store, openmetrics)
        return Response(body, media_type=OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        if ready():
            return PlainTextResponse("ready\n")
        return PlainTextResponse("not ready\n", status_code=503)

    async def landing(request: Request) -> Response:
        return HTMLResponse(_LANDING)

    async def reload_configuration(request: Request) -> Response:
        # Prometheus and Alertmanager answer a refused reload with 500 and the reason: so does this.
        result = await reload() if reload is not None else None
        if result is None:
            return PlainTextResponse("configuration reload is not available\n", status_code=404)
        body = "".join(f"{line}\n" for line in result.lines)
        return PlainTextResponse(body, status_code=200 if result.applied else 500)

    return Starlette(
        routes=[
            Route("/", landing),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/-/reload", reload_configuration, methods=["POST"]),
        ]
    )
