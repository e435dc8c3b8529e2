"""Callback endpoints refuse what does not come from the provider: a wrong path secret is 404
and a source outside the allow-list is 403 in enforce mode, both before anything is stored."""

from __future__ import annotations

import logging
from typing import Any, Literal

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient

from lms_domain.clock import FixedClock
from lms_domain.payments.models import WebhookEvent
from server.app import create_app
from server.keys import callback_tasks_key, sessionmaker_key
from server.settings import DatabaseSettings, PaymentsSettings, RateLimitSettings, Settings
from tests.conftest import T0

SECRET = "callback-security-secret-0123"
STK = {"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_unknown", "ResultCode": 1032, "ResultDesc": "x"}}}


async def _client(
    database_url: str, aiohttp_client: AiohttpClient, mode: Literal["off", "log_only", "enforce"], networks: list[str]
) -> Any:
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        rate_limit=RateLimitSettings(enabled=False),
        payments=PaymentsSettings(
            callback_secret=SECRET, callback_allowlist=networks, callback_allowlist_mode=mode, poll_interval_s=0
        ),
    )
    return await aiohttp_client(create_app(settings, clock=FixedClock(T0)))


async def _stored(client: Any) -> int:
    await client.app[callback_tasks_key].drain()
    async with client.app[sessionmaker_key]() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(WebhookEvent)) or 0)


@pytest.mark.parametrize(
    "path", ["/callbacks/mpesa/{s}/stk", "/callbacks/paybill/{s}/confirmation", "/callbacks/airtel/{s}"]
)
async def test_a_source_outside_the_allow_list_is_refused_in_enforce_mode(
    database_url: str, aiohttp_client: AiohttpClient, path: str
) -> None:
    client = await _client(database_url, aiohttp_client, "enforce", ["196.201.212.0/22"])
    response = await client.post(path.format(s=SECRET), json=STK)
    assert response.status == 403 and (await response.json())["code"] == "callback_source_refused"
    assert await _stored(client) == 0


async def test_log_only_mode_stores_and_acknowledges_an_unlisted_source(
    database_url: str, aiohttp_client: AiohttpClient
) -> None:
    client = await _client(database_url, aiohttp_client, "log_only", ["196.201.212.0/22"])
    response = await client.post(f"/callbacks/mpesa/{SECRET}/stk", json=STK)
    assert response.status == 200 and await _stored(client) == 1


async def test_a_listed_source_passes_and_a_wrong_secret_is_404(
    database_url: str, aiohttp_client: AiohttpClient
) -> None:
    client = await _client(database_url, aiohttp_client, "enforce", ["127.0.0.0/8", "::1/128"])
    assert (await client.post("/callbacks/mpesa/not-the-secret/stk", json=STK)).status == 404
    assert await _stored(client) == 0
    assert (await client.post(f"/callbacks/mpesa/{SECRET}/stk", json=STK)).status == 200
    assert await _stored(client) == 1


def test_the_allow_list_must_hold_networks() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        PaymentsSettings(callback_allowlist=["safaricom"])


async def test_the_callback_secret_never_reaches_the_logs(
    database_url: str, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await _client(database_url, aiohttp_client, "off", [])
    with caplog.at_level(logging.DEBUG):
        assert (await client.post(f"/callbacks/mpesa/{SECRET}/stk", json=STK)).status == 200
        assert (await client.post(f"/callbacks/airtel/{SECRET}", data=b"not json")).status == 400
        await client.app[callback_tasks_key].drain()
    logged = [record for record in caplog.records if record.name == "somo.http"]
    assert logged and any(getattr(r, "path", "") == "/callbacks/mpesa/<secret>/stk" for r in logged)
    # aiohttp's own access log is off in `somo serve` (access_log=None); ours is the request log.
    ours = [record for record in caplog.records if record.name.startswith("somo")]
    assert all(SECRET not in record.getMessage() + str(record.__dict__) for record in ours)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/callbacks/mpesa/{s}/stk", "mpesa_callback_malformed"),
        ("/callbacks/paybill/{s}/confirmation", "mpesa_c2b_malformed"),
        ("/callbacks/paybill/{s}/validation", "mpesa_c2b_malformed"),
        ("/callbacks/mpesa/{s}/result", "mpesa_result_malformed"),
        ("/callbacks/airtel/{s}", "airtel_callback_malformed"),
    ],
)
async def test_a_body_that_is_not_json_stores_nothing_and_json_of_the_wrong_shape_is_kept_as_failed(
    database_url: str, aiohttp_client: AiohttpClient, path: str, code: str
) -> None:
    client = await _client(database_url, aiohttp_client, "off", [])
    response = await client.post(path.format(s=SECRET), data=b"<xml>not json</xml>")
    assert response.status == 400 and (await response.json())["code"] == code
    assert await _stored(client) == 0
    response = await client.post(path.format(s=SECRET), json={"unexpected": True})
    assert response.status == 400 and (await response.json())["code"] == code
    await client.app[callback_tasks_key].drain()
    async with client.app[sessionmaker_key]() as session:
        [event] = (await session.scalars(sa.select(WebhookEvent))).all()
    assert event.status.value == "failed" and event.event_key.startswith("malformed:") and event.error


@pytest.mark.parametrize(
    "path",
    [
        "/callbacks/mpesa/{s}/stk",
        "/callbacks/paybill/{s}/confirmation",
        "/callbacks/paybill/{s}/validation",
        "/callbacks/mpesa/{s}/result",
        "/callbacks/mpesa/{s}/timeout",
        "/callbacks/airtel/{s}",
    ],
)
async def test_json_nested_too_deep_to_decode_is_a_400_not_a_500(
    database_url: str, aiohttp_client: AiohttpClient, path: str
) -> None:
    client = await _client(database_url, aiohttp_client, "off", [])
    response = await client.post(path.format(s=SECRET), data=b"[" * 100_000 + b"]" * 100_000)
    # The timeout endpoint keeps any body for a person to read; every other one refuses it.
    assert response.status == (200 if path.endswith("timeout") else 400)
