from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from qss_exporter.errors import ZoomApiError
from qss_exporter.zoom.oauth import TokenProvider
from tests.conftest import MutableClock
from tests.fake_zoom import FakeZoom, serve_fake_zoom


@pytest.fixture
async def zoom() -> AsyncIterator[FakeZoom]:
    async with serve_fake_zoom(FakeZoom()) as fake:
        yield fake


def provider(
    zoom: FakeZoom, client: httpx.AsyncClient, clock: MutableClock, outcomes: list[str], **kwargs: str
) -> TokenProvider:
    return TokenProvider(
        client,
        zoom.url + "/oauth/token",
        kwargs.get("account_id", zoom.account_id),
        kwargs.get("client_id", zoom.client_id),
        kwargs.get("client_secret", zoom.client_secret),
        clock=clock,
        grant_type=kwargs.get("grant_type", "account_credentials"),
        on_result=outcomes.append,
    )


async def test_token_is_cached_and_renewed_before_expiry(zoom: FakeZoom) -> None:
    clock, outcomes = MutableClock(), list[str]()
    async with httpx.AsyncClient() as client:
        tokens = provider(zoom, client, clock, outcomes)
        first = await tokens.token()
        assert (await tokens.token()) is first
        assert zoom.requests[0][2] == {"grant_type": "account_credentials", "account_id": zoom.account_id}
        clock.advance(3600 - 61)
        assert (await tokens.token()) is first
        clock.advance(2)  # 59 s left: inside the renewal margin
        second = await tokens.token()
    assert second.value != first.value
    assert outcomes == ["ok", "ok"]
    assert "fake-" not in repr(second)


async def test_concurrent_callers_share_one_request(zoom: FakeZoom) -> None:
    async with httpx.AsyncClient() as client:
        tokens = provider(zoom, client, MutableClock(), [])
        results = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert len({token.value for token in results}) == 1
    assert len(zoom.tokens) == 1


async def test_invalidate_after_a_401_fetches_a_new_token(zoom: FakeZoom) -> None:
    async with httpx.AsyncClient() as client:
        tokens = provider(zoom, client, MutableClock(), [])
        first = await tokens.token()
        tokens.invalidate(first)
        second = await tokens.token()
        tokens.invalidate(first)  # a stale report about an older token changes nothing
        assert (await tokens.token()) is second
    assert first.value != second.value


async def test_wrong_secret_is_one_clear_error_and_never_echoes_the_secret(zoom: FakeZoom) -> None:
    outcomes: list[str] = []
    async with httpx.AsyncClient() as client:
        tokens = provider(zoom, client, MutableClock(), outcomes, client_secret="wrong-s3cret")
        with pytest.raises(ZoomApiError) as caught:
            await tokens.token()
    assert caught.value.status == 400
    assert "Invalid client_id or client_secret" in str(caught.value)
    assert "wrong-s3cret" not in str(caught.value)
    assert outcomes == ["unauthorized"]


async def test_server_errors_and_unreachable_endpoints_are_zoom_api_errors(zoom: FakeZoom) -> None:
    outcomes: list[str] = []
    zoom.fail_token_with = 503
    async with httpx.AsyncClient() as client:
        with pytest.raises(ZoomApiError) as caught:
            await provider(zoom, client, MutableClock(), outcomes).token()
        assert caught.value.status == 503
        unreachable = TokenProvider(
            client, "http://127.0.0.1:9/oauth/token", "a", "b", "c", clock=MutableClock(), on_result=outcomes.append
        )
        with pytest.raises(ZoomApiError) as caught:
            await unreachable.token()
        assert caught.value.status == 0
    assert outcomes == ["error", "error"]


async def test_client_credentials_grant_sends_no_account_id(zoom: FakeZoom) -> None:
    async with httpx.AsyncClient() as client:
        await provider(zoom, client, MutableClock(), [], grant_type="client_credentials").token()
    assert zoom.requests[-1][2] == {"grant_type": "client_credentials"}
