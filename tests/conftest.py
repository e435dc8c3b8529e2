"""Real databases for every test.

Database tests are parametrised over ``sqlite`` and ``postgres``. Each test gets a
database of its own, copied from a template migrated once per run (a file copy on
SQLite, ``CREATE DATABASE ... TEMPLATE`` on Postgres), so tests commit for real, run
in any order and never see each other's rows. Database names carry the run's pid, so
parallel runs never collide, and databases left by killed runs are swept at start.

Under ``CI=true`` an unreachable Postgres or Redis fails the run; elsewhere the tests
that need it are skipped with the reason shown in the summary, never silently.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import FixedClock
from lms_domain.db import create_engine, make_sessionmaker
from server.migrate import upgrade
from server.settings import CENTRAL_NODE_ID

# The app factory starts the job scheduler by default; tests run jobs by hand (and the
# scheduler tests turn it on explicitly).
os.environ.setdefault("SOMO_SCHEDULER__ENABLED", "false")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_DSN = os.environ.get("SOMO_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# One Redis database per xdist worker (gw0 -> 15, gw1 -> 14, ...), so parallel tests that use
# the same phone numbers or session ids never see each other's keys.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("SOMO_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _WORKER % 15}")
RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
DB_PREFIX = "somo_test_"
BACKENDS = ("sqlite", "postgres")
T0 = datetime(2026, 11, 27, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi

settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

_pg_unavailable: str | None = None
_backend_of: dict[str, str] = {}


def _pg_url(database: str) -> str:
    base = make_url(PG_ADMIN_DSN)
    return base.set(drivername="postgresql+asyncpg", database=database).render_as_string(hide_password=False)


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _sweep_stale_databases() -> None:
    """Drop test databases whose run (pid) is gone: a killed run must not leak forever."""
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        names = [
            r["datname"] for r in await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'somo_test_%'")
        ]
        for name in names:
            match = re.match(rf"{DB_PREFIX}(\d+)_", name)
            if match and not os.path.exists(f"/proc/{match.group(1)}"):  # noqa: ASYNC240 - one stat per database
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    global _pg_unavailable  # set once before any test runs, read-only afterwards
    try:
        asyncio.run(_sweep_stale_databases())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _pg_unavailable = f"PostgreSQL at {make_url(PG_ADMIN_DSN).render_as_string()} is unreachable: {exc}"
        if IN_CI:
            pytest.exit(f"CI=true and {_pg_unavailable}", returncode=3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Record each test's backend, and drop the copies a ``backend_only`` test does not want
    (a behaviour only one database has is not a skip: there is nothing to run)."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        only = item.get_closest_marker("backend_only")
        if backend and only and backend not in only.args:
            dropped.append(item)
            continue
        if backend:
            _backend_of[item.nodeid] = backend
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


_BACKEND_ID = re.compile(rf"\[(?:[^\]]*-)?({'|'.join(BACKENDS)})(?:-[^\]]*)?\]$")


def _backend(nodeid: str) -> str | None:
    """The backend a test ran on: recorded at collection, or (under xdist, where the
    controller collects nothing) read from the parameter id in the node id."""
    if nodeid in _backend_of:
        return _backend_of[nodeid]
    found = _BACKEND_ID.search(nodeid)
    return found.group(1) if found else None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts = {b: {"passed": 0, "failed": 0, "skipped": 0} for b in BACKENDS}
    for outcome in ("passed", "failed", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            backend = _backend(getattr(report, "nodeid", ""))
            if backend and (outcome != "passed" or report.when == "call"):
                counts[backend][outcome] += 1
    line = ", ".join(
        f"{b}: {c['passed']} passed, {c['failed']} failed, {c['skipped']} skipped" for b, c in counts.items()
    )
    terminalreporter.write_sep("=", f"database backends — {line}")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres" and _pg_unavailable:
        pytest.skip(_pg_unavailable)
    return str(request.param)


@pytest.fixture(scope="session")
def template_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database migrated to head once per run, copied for every test."""
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("template") / "template.db"
        url = f"sqlite+aiosqlite:///{path}"
        upgrade(url)
        yield url
        return
    name = f"{DB_PREFIX}{RUN_ID}_tpl"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
    upgrade(url)
    yield url
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


_counter = iter(range(1, 10**9))


@pytest.fixture
def database_url(backend: str, template_url: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database for this test."""
    if backend == "sqlite":
        source = make_url(template_url).database
        assert source is not None
        target = tmp_path / "somo.db"
        shutil.copyfile(source, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    name = f"{DB_PREFIX}{RUN_ID}_{next(_counter)}"
    template = make_url(template_url).database
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def module_database_url(backend: str, template_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Like ``database_url``, shared by one module (for tests that start a server once)."""
    if backend == "sqlite":
        source = make_url(template_url).database
        assert source is not None
        target = tmp_path_factory.mktemp("module") / "somo.db"
        shutil.copyfile(source, target)
        yield f"sqlite+aiosqlite:///{target}"
        return
    name = f"{DB_PREFIX}{RUN_ID}_{next(_counter)}"
    template = make_url(template_url).database
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all (for migration and CLI tests)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"{DB_PREFIX}{RUN_ID}_{next(_counter)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    yield _pg_url(name)
    asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def sync_context(clock: FixedClock) -> SyncContext:
    install_change_capture()
    return SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL, clock=clock)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine, sync_context: SyncContext) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine, sync_context)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging and acting; tests commit when they need a real commit."""
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def redis_url() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and Redis at {REDIS_URL} is unreachable: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable: {exc}")
    finally:
        client.close()
    return REDIS_URL
