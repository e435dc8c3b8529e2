"""Admin console benchmark: how long the console's busiest pages take on the server with a
school of realistic size, and how heavy they are on the wire, compared with the REST API
answering the same question from the same domain call in the same run (the baseline: the
console adds sessions, CSRF, role checks and HTML rendering on top of it).

    python -m bench.console_bench [--learners 10000] [--repeat 200] [--backends sqlite postgres]

Pages measured (a school admin, signed in): the learner search by phone, the first page of
learners, the dashboard, and the CSV export of every learner. The baseline for the first two
is ``GET /api/v1/learners?q=...`` with a bearer token; the dashboard and the export have no API
twin, so only their own figures are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.databases import drop_database, fresh_database
from lms_domain.security import Hasher
from lms_domain.tenancy.models import Role
from lms_domain.tenancy.service import create_institution, create_learner, create_user
from server.app import create_app
from server.keys import sessionmaker_key
from server.migrate import upgrade
from server.settings import DatabaseSettings, Settings

PASSWORD = "bench-password-1"
FAST = Hasher(time_cost=1, memory_cost_kib=64, parallelism=1)


@dataclass
class Row:
    backend: str
    what: str
    p50_ms: float
    p95_ms: float
    bytes: int
    baseline_p50_ms: float | None = None


async def _seed(app: Any, learners: int) -> None:
    async with app[sessionmaker_key]() as session, session.begin():
        school = await create_institution(session=session, name="Bench School", code="BENCH1")
        await create_user(
            session=session,
            username="bench-admin",
            password=PASSWORD,
            role=Role.INSTITUTION_ADMIN,
            institution_id=school.id,
            hasher=FAST,
        )
        institution_id = school.id
    with Progress() as progress:
        task = progress.add_task(f"seeding {learners:,} learners", total=learners)
        for start in range(0, learners, 500):
            async with app[sessionmaker_key]() as session, session.begin():
                for n in range(start, min(start + 500, learners)):
                    await create_learner(
                        session=session,
                        institution_id=institution_id,
                        display_name=f"Learner {n:05d}",
                        phone=f"07{n % 100_000_000:08d}",
                    )
            progress.update(task, advance=min(500, learners - start))


async def _timed(
    client: TestClient, path: str, repeat: int, headers: dict[str, str] | None = None
) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = await client.get(path, headers=headers or {}, allow_redirects=False)
        body = await response.read()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status == 200, (path, response.status)
        size = len(body)
    return times, size


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


async def run(backend: str, dsn: str, learners: int, repeat: int) -> list[Row]:
    workdir = tempfile.mkdtemp(prefix="somo-console-bench-")
    url = await fresh_database(backend, dsn, workdir)
    await asyncio.to_thread(upgrade, url)
    os.environ["SOMO_SCHEDULER__ENABLED"] = "false"
    settings = Settings(database=DatabaseSettings(url=url))
    settings.rate_limit.enabled = False
    app = create_app(settings, hasher=FAST)
    rows: list[Row] = []
    try:
        async with TestClient(TestServer(app)) as client:
            await _seed(app, learners)
            form = await (await client.get("/admin/login")).text()
            token = re.search(r'name="_csrf" value="([^"]+)"', form)
            assert token
            signed = await client.post(
                "/admin/login",
                data={"_csrf": token.group(1), "login": "bench-admin", "password": PASSWORD, "next": "/admin"},
                allow_redirects=False,
            )
            assert signed.status == 303
            api = await client.post("/api/v1/auth/token", json={"login": "bench-admin", "password": PASSWORD})
            bearer = {"Authorization": f"Bearer {(await api.json())['access_token']}"}
            # Cookies of the console session travel with the API calls too; the API ignores them.
            phone = f"07{(learners // 2):08d}"
            cases = [
                ("learner search by phone", f"/admin/learners?q={phone}", f"/api/v1/learners?q={phone}"),
                ("first page of learners (50)", "/admin/learners", "/api/v1/learners?limit=50"),
                ("dashboard", "/admin", None),
            ]
            for what, page, twin in cases:
                await _timed(client, page, 5)
                times, size = await _timed(client, page, repeat)
                row = Row(backend, what, _p(times, 50), _p(times, 95), size)
                if twin:
                    await _timed(client, twin, 5, bearer)
                    base, _ = await _timed(client, twin, repeat, bearer)
                    row.baseline_p50_ms = _p(base, 50)
                rows.append(row)
            times, size = await _timed(client, "/admin/learners?format=csv", 3)
            rows.append(Row(backend, f"CSV export of {learners:,} learners", _p(times, 50), max(times), size))
            assets = 0
            for name in ("admin.css", "admin.js"):
                response = await client.get(f"/admin/static/{name}")
                assets += len(await response.read())
            rows.append(Row(backend, "static assets (CSS + JS, once)", 0.0, 0.0, assets))
    finally:
        await drop_database(url, dsn)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--learners", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--dsn", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    rows: list[Row] = []
    for backend in args.backends:
        rows.extend(asyncio.run(run(backend, args.dsn, args.learners, args.repeat)))
    table = Table(
        title=f"Admin console, {args.learners:,} learners, {platform.processor() or platform.machine()}, Python {platform.python_version()}"
    )
    for column in ("backend", "page", "p50 ms", "p95 ms", "bytes", "API p50 ms (baseline)", "console / API"):
        table.add_column(column)
    for r in rows:
        ratio = f"{r.p50_ms / r.baseline_p50_ms:.2f}×" if r.baseline_p50_ms else ""
        table.add_row(
            r.backend,
            r.what,
            f"{r.p50_ms:.1f}" if r.p50_ms else "",
            f"{r.p95_ms:.1f}" if r.p95_ms else "",
            f"{r.bytes:,}",
            f"{r.baseline_p50_ms:.1f}" if r.baseline_p50_ms else "",
            ratio,
        )
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
