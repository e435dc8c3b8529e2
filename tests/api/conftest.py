"""An API world: two schools, each with an admin, an instructor and a learner login, and a
platform admin; helpers to call the API as any of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from lms_domain.tenancy.models import Institution, Learner, Role
from lms_domain.tenancy.service import create_learner, create_user
from server.app import create_app
from server.keys import sessionmaker_key
from server.settings import DatabaseSettings, Settings
from tests.factories import FAST_HASHER, make_institution

PASSWORD = "correct-horse-battery"


@dataclass
class School:
    institution: Institution
    learner: Learner
    tokens: dict[str, str] = field(default_factory=dict)  # role name -> access token


@dataclass
class World:
    client: TestClient
    a: School
    b: School
    platform_token: str
    makers: async_sessionmaker[AsyncSession]

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers.update(self.auth(token))
        response = await self.client.request(method, path, headers=headers, **kw)
        text = await response.text()
        body: Any = text
        if response.content_type in ("application/json", "application/problem+json"):
            body = await response.json() if text else None
        return response.status, body


async def login(client: TestClient, login_name: str, password: str = PASSWORD) -> str:
    response = await client.post("/api/v1/auth/token", json={"login": login_name, "password": password})
    assert response.status == 200, await response.text()
    return str((await response.json())["access_token"])


async def _school(session: AsyncSession, name: str, phone: str) -> tuple[School, dict[str, str]]:
    institution = await make_institution(session, name=name)
    tag = uuid.uuid4().hex[:6]
    logins = {}
    for role in (Role.INSTITUTION_ADMIN, Role.INSTRUCTOR):
        user = await create_user(
            session=session,
            username=f"{role.value}-{tag}",
            password=PASSWORD,
            role=role,
            institution_id=institution.id,
            hasher=FAST_HASHER,
        )
        logins[role.value] = user.username
    learner_user = await create_user(
        session=session,
        username=f"learner-{tag}",
        password=PASSWORD,
        role=Role.LEARNER,
        institution_id=institution.id,
        hasher=FAST_HASHER,
    )
    learner = await create_learner(
        session=session,
        institution_id=institution.id,
        display_name=f"Learner {name}",
        phone=phone,
        user_id=learner_user.id,
        pin="1234",
        hasher=FAST_HASHER,
    )
    logins["learner"] = learner_user.username
    return School(institution=institution, learner=learner), logins


@pytest.fixture
def api_clock() -> FixedClock:
    from tests.conftest import T0

    return FixedClock(T0)


@pytest.fixture
async def world(database_url: str, aiohttp_client: Any, api_clock: FixedClock) -> World:
    settings = Settings(database=DatabaseSettings(url=database_url))
    app = create_app(settings, clock=api_clock, hasher=FAST_HASHER)
    client: TestClient = await aiohttp_client(app)
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        a, a_logins = await _school(session, "Alpha School", "0711000001")
        b, b_logins = await _school(session, "Beta School", "0711000002")
        await create_user(
            session=session,
            username="root",
            password=PASSWORD,
            role=Role.PLATFORM_ADMIN,
            institution_id=None,
            hasher=FAST_HASHER,
        )
    for school, logins in ((a, a_logins), (b, b_logins)):
        for role, name in logins.items():
            school.tokens[role] = await login(client, name)
    return World(client=client, a=a, b=b, platform_token=await login(client, "root"), makers=makers)
