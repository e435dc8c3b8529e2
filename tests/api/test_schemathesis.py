"""Property-based fuzzing of the whole API from its own OpenAPI document (schemathesis).

A real server runs in a background thread on a seeded database; every operation gets
generated requests, valid and invalid, signed in as the demo school's admin. The checks:
no 5xx, every status documented, every body matches its declared schema and media type.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import SystemClock
from lms_domain.db import create_engine, make_sessionmaker
from server.api import PREFIX, all_apis
from server.api.openapi import build_openapi
from server.app import API_VERSION, create_app
from server.seed import seed_demo
from server.settings import CENTRAL_NODE_ID, DatabaseSettings, RateLimitSettings, Settings
from tests.factories import FAST_HASHER

SPEC = build_openapi(all_apis(), prefix=PREFIX, title="Somo API", version=API_VERSION, server_url="http://localhost")
schema = schemathesis.openapi.from_dict(SPEC)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerThread:
    """The real app on a real port, in its own thread and event loop, because
    schemathesis calls it with a blocking HTTP client."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.settings = settings
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.runner: web.AppRunner | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(create_app(self.settings, hasher=FAST_HASHER), access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.ready.wait(30), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


async def _seed(url: str) -> None:
    install_change_capture()
    engine = create_engine(url)
    makers = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL))
    async with makers() as session, session.begin():
        await seed_demo(session=session, clock=SystemClock(), simulator_url="http://127.0.0.1:1", hasher=FAST_HASHER)
    await engine.dispose()


@pytest.fixture(scope="module")
def live_api(module_database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    asyncio.run(_seed(module_database_url))
    settings = Settings(database=DatabaseSettings(url=module_database_url), rate_limit=RateLimitSettings(enabled=False))
    with ServerThread(settings, _free_port()) as server:
        base = f"http://127.0.0.1:{server.port}"
        answer = requests.post(
            f"{base}/api/v1/auth/token", json={"login": "admin", "password": "admin-dev-2026"}, timeout=10
        )
        answer.raise_for_status()
        yield base, {"Authorization": f"Bearer {answer.json()['access_token']}"}


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_honours_its_schema(case: Any, live_api: tuple[str, dict[str, str]]) -> None:
    base, auth = live_api
    case.call_and_validate(base_url=base, headers=auth, checks=CHECKS, timeout=30)
