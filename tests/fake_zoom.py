"""A fake Zoom (OAuth token endpoint, and room for REST APIs) served over real HTTP on loopback.

Tests control it through its attributes (which credentials are valid, how long tokens live, what
to fail) and read what it was asked in `requests`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class FakeZoom:
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    account_id: str = "Xq3vTn0bR8aL5mWcY2kPzQ"
    expires_in: int = 3600
    accepted_grants: tuple[str, ...] = ("account_credentials", "client_credentials")
    fail_token_with: int | None = None  # answer token requests with this status
    tokens: list[str] = field(default_factory=list)  # every token issued, oldest first
    grants: dict[str, str] = field(default_factory=dict)  # token -> the grant_type it was issued for
    revoked: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (method, path, params)
    routes: list[Route] = field(default_factory=list)  # extra endpoints a test adds
    url: str = ""

    def valid(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization.removeprefix("Bearer ")
        return token in self.tokens and token not in self.revoked

    async def _token(self, request: Request) -> Response:
        form = parse_qsl((await request.body()).decode())
        params = {**dict(request.query_params), **dict(form)}
        self.requests.append(("POST", "/oauth/token", params))
        if self.fail_token_with is not None:
            return JSONResponse({"reason": "injected failure"}, status_code=self.fail_token_with)
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization") != expected:
            return JSONResponse(
                {"reason": "Invalid client_id or client_secret", "error": "invalid_client"}, status_code=400
            )
        if params.get("grant_type") not in self.accepted_grants:
            return JSONResponse(
                {"reason": "unsupported grant type", "error": "unsupported_grant_type"}, status_code=400
            )
        if params.get("grant_type") == "account_credentials" and params.get("account_id") != self.account_id:
            return JSONResponse({"reason": "Invalid account_id"}, status_code=400)
        token = "fake-" + secrets.token_urlsafe(16)
        self.tokens.append(token)
        self.grants[token] = params["grant_type"]
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.expires_in,
                "scope": "dashboard:read:admin",
                "api_url": self.url,
            }
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/oauth/token", self._token, methods=["POST"]), *self.routes])


@contextlib.asynccontextmanager
async def serve_fake_zoom(
    fake: FakeZoom, extra: Callable[[FakeZoom], list[Route]] | None = None
) -> AsyncIterator[FakeZoom]:
    """Run `fake` under uvicorn on 127.0.0.1 (free port) in the current event loop."""
    if extra is not None:
        fake.routes.extend(extra(fake))
    server = uvicorn.Server(
        uvicorn.Config(fake.app(), host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    fake.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield fake
    finally:
        server.should_exit = True
        await task
