"""Liveness and readiness.

``/health`` touches nothing, so a slow database never gets a healthy process killed;
``/ready`` checks what a request needs (database, schema version, Redis if configured)
so a load balancer only routes to replicas that can serve.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import sqlalchemy as sa
from aiohttp import web

from server.keys import engine_key, kv_key, settings_key
from server.migrate import head_revision

routes = web.RouteTableDef()
log = logging.getLogger("somo.health")
CHECK_TIMEOUT_S = 3.0


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check_database(app: web.Application) -> dict[str, Any]:
    async with app[engine_key].connect() as conn:
        await conn.execute(sa.text("SELECT 1"))
        try:
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        except sa.exc.DBAPIError:
            version = None
    expected = head_revision()
    if version != expected:
        return {"status": "fail", "detail": f"schema at {version or 'none'}, expected {expected}: run somo migrate"}
    return {"status": "ok", "schema": version}


async def _check_redis(app: web.Application) -> dict[str, Any]:
    await app[kv_key].ping()
    return {"status": "ok"}


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, dict[str, Any]] = {}
    probes = {"database": _check_database}
    if app[settings_key].redis.url:
        probes["redis"] = _check_redis
    for name, probe in probes.items():
        try:
            checks[name] = await asyncio.wait_for(probe(app), CHECK_TIMEOUT_S)
        except Exception as exc:
            log.warning("readiness check failed", extra={"check": name, "error": str(exc)})
            checks[name] = {"status": "fail", "detail": type(exc).__name__}
    ok = all(c["status"] == "ok" for c in checks.values())
    return web.json_response({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)
