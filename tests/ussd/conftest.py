"""A USSD world: the server with the demo data, and the Daraja, Airtel and Africa's Talking
simulators on loopback; a ``Phone`` that dials it with AT's real form protocol."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from server.app import create_app
from server.keys import callback_tasks_key, phone_channels_key, sessionmaker_key
from server.seed import QUIZ_QUESTIONS, seed_demo
from server.settings import (
    DatabaseSettings,
    HttpSettings,
    NotificationsSettings,
    PaymentsSettings,
    RateLimitSettings,
    RedisSettings,
    Settings,
    UssdSettings,
)
from server.simulators.acs import AcsSimConfig, add_acs_routes
from server.simulators.africastalking import AtSimConfig, add_at_routes
from server.simulators.airtel import AirtelSimConfig, add_airtel_routes
from server.simulators.daraja import SANDBOX_PASSKEY, DarajaSimConfig, Outcome, create_daraja_app
from tests.conftest import T0
from tests.factories import FAST_HASHER
from tests.loopback import HeldPort

AT_API_KEY = "sim-at-api-key-ussd-tests"
UNDELIVERABLE = "+254700000003"  # Juma: accepted by AT, then reported Failed
AMINA = "+254700000001"  # one profile, PIN 1234, English
SHARED = "+254700000002"  # Baraka (2345, English) and Zawadi (3456, Kiswahili)
SAFARICOM, AIRTEL = "63902", "63903"
CORRECT = [next(i for i, c in enumerate(choices, start=1) if c[2]) for _en, _sw, choices in QUIZ_QUESTIONS]


@dataclass
class Phone:
    """A handset dialling the service: keeps AT's cumulative ``text`` for one session."""

    client: TestClient[web.Request, web.Application]
    number: str
    network: str = SAFARICOM
    session_id: str = ""
    inputs: list[str] = field(default_factory=list)
    screens: list[str] = field(default_factory=list)

    async def hop(self, text: str) -> str:
        response = await self.client.post(
            "/ussd/africastalking",
            data={
                "sessionId": self.session_id,
                "serviceCode": "*384*123#",
                "phoneNumber": self.number,
                "networkCode": self.network,
                "text": text,
            },
        )
        assert response.status == 200 and response.content_type == "text/plain"
        body = await response.text()
        assert body.startswith(("CON ", "END ")), body
        assert len(body) <= 160, (len(body), body)
        self.screens.append(body)
        return body

    async def dial(self) -> str:
        self.session_id, self.inputs = f"ATUid_{uuid.uuid4().hex}", []
        return await self.hop("")

    async def press(self, *values: str) -> str:
        body = ""
        for value in values:
            self.inputs.append(value)
            body = await self.hop("*".join(self.inputs))
        return body


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    app: web.Application
    sim: TestServer
    sim_client: TestClient[web.Request, web.Application]
    makers: async_sessionmaker[AsyncSession]
    clock: FixedClock

    def phone(self, number: str, network: str = SAFARICOM) -> Phone:
        return Phone(self.client, number, network)

    async def settle(self, condition: Any, what: str) -> None:
        for _ in range(500):
            await self.app[phone_channels_key].background.drain()
            await self.app[callback_tasks_key].drain()
            if await condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def scalar(self, stmt: Any) -> Any:
        async with self.makers() as session:
            return await session.scalar(stmt)


async def make_world(
    database_url: str,
    aiohttp_server: AiohttpServer,
    aiohttp_client: AiohttpClient,
    *,
    redis_url: str | None = None,
    msisdn_outcomes: Mapping[str, Outcome] | None = None,
    notifications: Mapping[str, Any] | None = None,
) -> World:
    sim_app = create_daraja_app(
        DarajaSimConfig(processing_ms=10, enforce_rule_17=False, msisdn_outcomes=dict(msisdn_outcomes or {}))
    )
    add_airtel_routes(sim_app, AirtelSimConfig(processing_ms=10, callback_auth=True))
    # The app must know its own address (for the callback URLs it hands the simulators)
    # before it listens: hold the port until then, so no other test's server can take it.
    held = HeldPort()
    port = held.number
    public = f"http://127.0.0.1:{port}"
    add_at_routes(
        sim_app,
        AtSimConfig(
            api_key=AT_API_KEY,
            delivery_report_url=f"{public}/sms/africastalking/delivery",
            inbound_url=f"{public}/sms/africastalking/inbound",
            delivery_failures={UNDELIVERABLE: "UserIsInactive"},
        ),
    )
    add_acs_routes(sim_app, AcsSimConfig())
    sim = await aiohttp_server(sim_app)
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        http=HttpSettings(public_url=public),
        redis=RedisSettings(url=redis_url),
        notifications=NotificationsSettings(at_api_key=AT_API_KEY, send_interval_s=0, **(notifications or {})),
        rate_limit=RateLimitSettings(enabled=False),
        # The longest hop deadline allowed: on a loaded CI machine a hop may take seconds, and
        # these tests are about the menus, not about how the engine meets AT's timeout.
        ussd=UssdSettings(deadline_s=12),
        payments=PaymentsSettings(
            simulator_url=str(sim.make_url("/")).rstrip("/"),
            mpesa_consumer_key="sim-consumer-key",
            mpesa_consumer_secret="sim-consumer-secret",
            mpesa_passkey=SANDBOX_PASSKEY,
            airtel_client_id="sim-airtel-client-id",
            airtel_client_secret="sim-airtel-client-secret",
            airtel_callback_hash_secret="sim-airtel-callback-secret",
            callback_secret="test-callback-secret-ussd-0001",
            poll_interval_s=0,
        ),
    )
    clock = FixedClock(T0)
    app = create_app(settings, clock=clock, hasher=FAST_HASHER)
    server = await aiohttp_server(app, port=held.release())
    client = await aiohttp_client(server)
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        await seed_demo(session=session, clock=clock, simulator_url=settings.payments.simulator_url, hasher=FAST_HASHER)
    return World(client=client, app=app, sim=sim, sim_client=await aiohttp_client(sim), makers=makers, clock=clock)


@pytest.fixture
async def world(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    return await make_world(database_url, aiohttp_server, aiohttp_client)
