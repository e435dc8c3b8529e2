"""A console world: two schools, each with an admin, an instructor and a learner, a platform
admin, and a browser-like client that signs in and sends CSRF tokens like the real pages do.

``browser`` drives Debian's Chromium through Playwright against the app served on a real
loopback port; under ``CI=true`` a missing Chromium fails the run instead of skipping.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from lms_domain.tenancy.models import Institution, Learner, Role
from lms_domain.tenancy.service import create_learner, create_user
from server.app import create_app
from server.keys import sessionmaker_key
from server.settings import DatabaseSettings, Settings
from tests.conftest import IN_CI, T0
from tests.factories import FAST_HASHER, make_institution

PASSWORD = "correct-horse-battery"
CHROMIUM = os.environ.get("SOMO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')
_META_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass
class School:
    institution: Institution
    learner: Learner
    admin: str  # usernames
    instructor: str


class Browserish:
    """An aiohttp client with its own cookie jar that signs in through the login form and
    sends the page's CSRF token with every POST, as a browser on the console would."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    async def login(self, username: str, password: str = PASSWORD) -> ClientResponse:
        form = await self.client.get("/admin/login")
        token = _CSRF.search(await form.text())
        assert token, "the login form has no CSRF field"
        response = await self.client.post(
            "/admin/login",
            data={"_csrf": token.group(1), "login": username, "password": password, "next": "/admin"},
            allow_redirects=False,
        )
        if response.status == 303:
            page = await self.client.get("/admin")
            meta = _META_CSRF.search(await page.text())
            assert meta, "a signed-in page carries the CSRF token"
            self.csrf = meta.group(1)
        return response

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        response = await self.client.get(path, allow_redirects=False, **kw)
        return response.status, await response.text()

    async def get_response(self, path: str) -> ClientResponse:
        return await self.client.get(path, allow_redirects=False)

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> ClientResponse:
        payload = dict(data or {})
        if csrf:
            payload.setdefault("_csrf", self.csrf)
        return await self.client.post(path, data=payload, allow_redirects=False)


@dataclass
class Console:
    app: Any
    server: TestServer
    makers: async_sessionmaker[AsyncSession]
    clock: FixedClock
    a: School
    b: School
    root: str = "root"

    async def as_user(self, username: str) -> Browserish:
        """A fresh client (its own cookies) signed in as ``username``."""
        client = TestClient(self.server)
        await client.start_server()
        self._clients.append(client)
        browserish = Browserish(client)
        response = await browserish.login(username)
        assert response.status == 303, await response.text()
        return browserish

    @property
    def base_url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def __post_init__(self) -> None:
        self._clients: list[TestClient] = []

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


async def _school(session: AsyncSession, name: str, phone: str) -> School:
    institution = await make_institution(session, name=name)
    tag = uuid.uuid4().hex[:6]
    names = {}
    for role in (Role.INSTITUTION_ADMIN, Role.INSTRUCTOR):
        user = await create_user(
            session=session,
            username=f"{role.value}-{tag}",
            password=PASSWORD,
            role=role,
            institution_id=institution.id,
            hasher=FAST_HASHER,
        )
        names[role] = user.username
    learner = await create_learner(
        session=session,
        institution_id=institution.id,
        display_name=f"Learner {name}",
        phone=phone,
        pin="1234",
        hasher=FAST_HASHER,
    )
    return School(
        institution=institution,
        learner=learner,
        admin=names[Role.INSTITUTION_ADMIN],
        instructor=names[Role.INSTRUCTOR],
    )


@pytest.fixture
def console_clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
async def console(database_url: str, console_clock: FixedClock) -> AsyncIterator[Console]:
    settings = Settings(database=DatabaseSettings(url=database_url))
    app = create_app(settings, clock=console_clock, hasher=FAST_HASHER)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    makers = app[sessionmaker_key]
    async with makers() as session, session.begin():
        a = await _school(session, "Alpha School", "0711000001")
        b = await _school(session, "Beta School", "0711000002")
        await create_user(
            session=session,
            username="root",
            password=PASSWORD,
            role=Role.PLATFORM_ADMIN,
            institution_id=None,
            hasher=FAST_HASHER,
        )
    world = Console(app=app, server=server, makers=makers, clock=console_clock, a=a, b=b)
    try:
        yield world
    finally:
        await world.close()
        await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian Chromium, driven by Playwright (never ``playwright install``)."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 - one stat, before the browser starts
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def sign_in(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real form, as a person would."""
    page.set_default_timeout(10_000)
    await page.goto(f"{base_url}/admin/login")
    await page.get_by_label("Username or phone").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base_url}/admin")
