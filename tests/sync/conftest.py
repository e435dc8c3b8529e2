"""A central server over real HTTP on loopback, and edge nodes enrolled with it.

The central server is the real app (``create_app``) on the test's database (SQLite or
Postgres); each edge is a real node directory (its own SQLite file, key and secret) made
by ``init_node`` with a one-time code from the REST API, and synced with the real client.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edge_node.node import NodeFiles, OpenNode, client_for, init_node, open_node
from lms_domain.access import Actor
from lms_domain.clock import FixedClock
from lms_domain.tenancy.models import Institution, Learner, Role
from lms_domain.tenancy.service import create_learner, create_user
from server.app import create_app
from server.keys import sessionmaker_key
from server.settings import DatabaseSettings, Settings, SyncSettings
from sync.client import SyncClient
from sync.runner import SyncReport, sync_once
from tests.conftest import T0
from tests.factories import FAST_HASHER, CourseFixture, make_course, make_institution

PASSWORD = "correct-horse-battery"


@dataclass
class School:
    institution: Institution
    learners: list[Learner]
    admin_login: str
    learner_login: str
    course: CourseFixture  # the school's own course


@dataclass
class Central:
    url: str
    app: web.Application
    clock: FixedClock
    makers: async_sessionmaker[AsyncSession]
    a: School
    b: School
    catalogue: CourseFixture  # a platform course every school may use
    asset_dir: Path
    http: aiohttp.ClientSession

    async def token(self, login: str) -> str:
        async with self.http.post(
            self.url + "/api/v1/auth/token", json={"login": login, "password": PASSWORD}
        ) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    async def api(self, method: str, path: str, token: str, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(method, self.url + path, headers=headers, **kw) as response:
            body = await response.json() if response.content_type.endswith("json") else await response.text()
            return response.status, body

    async def register_node(self, school: School, name: str = "staff room") -> tuple[uuid.UUID, str]:
        status, body = await self.api(
            "POST", "/api/v1/edge-nodes", await self.token(school.admin_login), json={"name": name}
        )
        assert status == 201, body
        return uuid.UUID(body["id"]), str(body["enrollment_code"])

    async def scalar(self, stmt: Any) -> Any:
        async with self.makers() as session:
            return await session.scalar(stmt)


@dataclass
class Edge:
    node: OpenNode
    central: Central
    http: aiohttp.ClientSession
    clock: FixedClock
    client: SyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = client_for(self.node, self.http)

    async def sync(self, **kw: Any) -> SyncReport:
        return await sync_once(self.node.db, self.client, **kw)

    @property
    def actor(self) -> Actor:
        """A school admin acting at this node (the domain flows take an actor)."""
        return Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=self.node.identity.institution_id)

    async def scalar(self, stmt: Any) -> Any:
        async with self.node.db.read() as session:
            return await session.scalar(stmt)


async def _school(session: AsyncSession, name: str, phone_prefix: str) -> School:
    institution = await make_institution(session, name=name)
    tag = uuid.uuid4().hex[:6]
    admin = await create_user(
        session=session,
        username=f"admin-{tag}",
        password=PASSWORD,
        role=Role.INSTITUTION_ADMIN,
        institution_id=institution.id,
        hasher=FAST_HASHER,
    )
    learner_user = await create_user(
        session=session,
        username=f"learner-{tag}",
        password=PASSWORD,
        role=Role.LEARNER,
        institution_id=institution.id,
        hasher=FAST_HASHER,
    )
    learners = [
        await create_learner(
            session=session,
            institution_id=institution.id,
            display_name=f"{name} learner {i}",
            phone=f"{phone_prefix}{i}",
            user_id=learner_user.id if i == 0 else None,
            pin="1234",
            hasher=FAST_HASHER,
        )
        for i in range(3)
    ]
    course = await make_course(session, institution=institution, title=f"{name} maths")
    return School(institution, learners, admin.username, learner_user.username, course)


@pytest.fixture
async def central(database_url: str, aiohttp_server: Any, tmp_path: Path) -> AsyncIterator[Central]:
    clock = FixedClock(T0)
    asset_dir = tmp_path / "central-assets"
    asset_dir.mkdir()
    settings = Settings(database=DatabaseSettings(url=database_url), sync=SyncSettings(asset_dir=asset_dir))
    app = create_app(settings, clock=clock, hasher=FAST_HASHER)
    server: TestServer = await aiohttp_server(app)
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        a = await _school(session, "Alpha", "071100000")
        b = await _school(session, "Beta", "072200000")
        catalogue = await make_course(session, institution=None, title="Platform English")
    async with aiohttp.ClientSession() as http:
        yield Central(str(server.make_url("")).rstrip("/"), app, clock, makers, a, b, catalogue, asset_dir, http)


EdgeFactory = Callable[..., Any]


@pytest.fixture
async def make_edge(central: Central, tmp_path: Path) -> AsyncIterator[EdgeFactory]:
    """``await make_edge(school, skew=timedelta(...))``: a new node enrolled for ``school``."""
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(aiohttp.ClientSession())

        async def make(school: School | None = None, *, skew: timedelta = timedelta(0), name: str = "") -> Edge:
            school = school or central.a
            _, code = await central.register_node(school)
            files = NodeFiles(tmp_path / f"edge-{name or uuid.uuid4().hex[:6]}")
            await init_node(files, central_url=central.url, code=code)
            clock = FixedClock(T0 + skew)
            node = await stack.enter_async_context(open_node(files, clock=clock))
            return Edge(node, central, http, clock)

        yield make


def live(model: Any) -> Any:
    """Rows not tombstoned."""
    return sa.select(sa.func.count()).select_from(model).where(model.deleted_at.is_(None))
