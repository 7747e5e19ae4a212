"""Zoom Server-to-Server OAuth: one cached access token per app, renewed before it expires.

`POST {token_url}` with Basic client credentials and `grant_type=account_credentials&account_id=…`
(form body, as Zoom's own Rivet SDK sends it). Zoom issues no refresh token: a new token is fetched
when fewer than `renew_margin` seconds remain (Rivet uses 60 s), or when a caller reports that the
token was refused (401). Tokens are never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from qss_exporter.errors import ZoomApiError, ZoomAuthError

__all__ = ["AccessToken", "TokenProvider"]


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str
    expires_at: float  # clock time
    scopes: frozenset[str]

    def __repr__(self) -> str:  # never print the token itself
        return f"AccessToken(<secret>, expires_at={self.expires_at:.0f}, scopes={sorted(self.scopes)})"


class TokenProvider:
    """Hands out a valid token for one app; concurrent callers share one token request.

    `on_result(outcome)` is told how every token request ended: `ok`, `unauthorized` (wrong client
    id or secret, or the app is deactivated), or `error` (anything else).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        token_url: str,
        account_id: str,
        client_id: str,
        client_secret: str,
        *,
        clock: Callable[[], float],
        grant_type: str = "account_credentials",
        renew_margin: float = 60.0,
        on_result: Callable[[str], None] = lambda outcome: None,
    ) -> None:
        self._client = client
        self._token_url = token_url
        self._account_id = account_id
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._clock = clock
        self._grant_type = grant_type
        self._renew_margin = renew_margin
        self._on_result = on_result
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    @property
    def grant_type(self) -> str:
        return self._grant_type

    async def token(self) -> AccessToken:
        token = self._token
        if token is not None and token.expires_at - self._clock() > self._renew_margin:
            return token
        async with self._lock:  # one request however many callers are waiting
            token = self._token
            if token is None or token.expires_at - self._clock() <= self._renew_margin:
                token = self._token = await self._request()
            return token

    def invalidate(self, refused: AccessToken) -> None:
        """A call was answered 401 with `refused`: the next `token()` fetches a new one."""
        if self._token is refused:
            self._token = None

    async def _request(self) -> AccessToken:
        data = {"grant_type": self._grant_type}
        if self._grant_type == "account_credentials":
            data["account_id"] = self._account_id
        try:
            response = await self._client.post(self._token_url, data=data, auth=self._auth)
        except httpx.HTTPError as error:
            self._on_result("error")
            raise ZoomApiError(0, self._token_url, f"token request failed: {type(error).__name__}: {error}") from None
        if response.status_code in (400, 401, 403):
            self._on_result("unauthorized")
            raise ZoomAuthError(
                response.status_code,
                self._token_url,
                f"token request refused ({_reason(response)}); check client_id, client_secret and account_id",
            )
        if response.status_code != 200:
            self._on_result("error")
            raise ZoomApiError(response.status_code, self._token_url, f"token request failed ({_reason(response)})")
        try:
            body = response.json()
            value = body["access_token"]
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError):
            self._on_result("error")
            raise ZoomApiError(200, self._token_url, "token response is not the expected JSON") from None
        if not isinstance(value, str) or not value:
            self._on_result("error")
            raise ZoomApiError(200, self._token_url, "token response has no access_token")
        self._on_result("ok")
        scope = body.get("scope")
        return AccessToken(
            value, self._clock() + lifetime, frozenset(scope.split()) if isinstance(scope, str) else frozenset()
        )


def _reason(response: httpx.Response) -> str:
    """Zoom's error text ("Invalid client_id or client_secret"), without echoing anything we sent."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        text = body.get("reason") or body.get("message") or body.get("error")
        if isinstance(text, str):
            return f"HTTP {response.status_code}: {text[:200]}"
    return f"HTTP {response.status_code}"
