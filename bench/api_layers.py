"""Where the API's time goes: the same course-list query through each layer of the stack,
from raw SQL on the engine up to the full endpoint, in one server process.

    python -m bench.api_layers [--backend postgres|sqlite] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from bench.api_load import PASSWORD, drop_database, free_port, fresh_database, prepare, run_load, wait_ready
from lms_domain.courses.models import Course
from lms_domain.courses.schemas import CoursePage
from server.migrate import upgrade

LAYERS = ["/x/raw", "/x/core", "/x/session", "/x/session+json", "/api/v1/courses"]
COLUMNS = (
    "id, institution_id, slug, title_en, title_sw, summary_en, summary_sw, access, is_published, created_at, updated_at"
)


def serve(url: str, port: int) -> None:
    """The real app plus one route per layer (run in a child process)."""
    from server.app import create_app
    from server.keys import engine_key, read_sessionmaker_key
    from server.settings import DatabaseSettings, RateLimitSettings, Settings

    app = create_app(Settings(database=DatabaseSettings(url=url), rate_limit=RateLimitSettings(enabled=False)))
    stmt = (
        sa.select(*Course.__table__.c)
        .where(Course.deleted_at.is_(None), Course.is_published.is_(True))
        .order_by(Course.id)
        .limit(51)
    )
    raw_sql = f"SELECT {COLUMNS} FROM courses WHERE deleted_at IS NULL AND is_published ORDER BY id LIMIT 51"  # noqa: S608 - constant

    async def raw(request: web.Request) -> web.Response:
        async with request.app[engine_key].connect() as conn:
            rows = (await conn.exec_driver_sql(raw_sql)).all()
        return web.json_response({"n": len(rows)})

    async def core(request: web.Request) -> web.Response:
        async with request.app[engine_key].connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return web.json_response({"n": len(rows)})

    async def session(request: web.Request) -> web.Response:
        async with request.app[read_sessionmaker_key]() as s, s.begin():
            rows = (await (await s.connection()).execute(stmt)).all()
        return web.json_response({"n": len(rows)})

    async def session_json(request: web.Request) -> web.Response:
        async with request.app[read_sessionmaker_key]() as s, s.begin():
            rows = (await (await s.connection()).execute(stmt)).mappings().all()
        page = CoursePage.model_validate({"items": rows, "next_cursor": None})
        return web.Response(body=page.model_dump_json().encode(), content_type="application/json")

    for path, handler in zip(LAYERS, (raw, core, session, session_json), strict=False):
        app.router.add_get(path, handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def measure(url: str, seconds: float) -> list[tuple[str, float]]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "bench.api_layers", "--serve", url, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{port}/health")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{port}/api/v1/auth/token", json={"login": "bench", "password": PASSWORD}
            ) as response,
        ):
            auth = {"Authorization": f"Bearer {(await response.json())['access_token']}"}
        results = []
        for path in LAYERS:
            done, _errors, _lat = await run_load(
                lambda http, path=path: http.get(f"http://127.0.0.1:{port}{path}", headers=auth),
                seconds=seconds,
                concurrency=32,
            )
            results.append((path, done / seconds))
        return results
    finally:
        child.send_signal(signal.SIGINT)
        child.wait(timeout=15)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        url = asyncio.run(fresh_database(args.backend, args.postgres, workdir))
        try:
            upgrade(url)
            asyncio.run(prepare(url))
            for path, rps in asyncio.run(measure(url, args.seconds)):
                print(json.dumps({"backend": args.backend, "layer": path, "req_per_s": round(rps)}))
        finally:
            asyncio.run(drop_database(url, args.postgres))


if __name__ == "__main__":
    main()
