"""The school's server: the learning API over the LAN, on SQLite, syncing in the background.

It serves the central server's own handlers and domain code (auth, people, courses,
content, learning): one implementation of the rules, not a copy. Payments, USSD and SMS
stay central. Logins made here are signed with this node's own secret, so they are good on
this node only, and a stolen node can mint nothing another school or the central server
accepts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from edge_node import renewals
from edge_node.node import NodeFiles, OpenNode, client_for, open_node
from lms_domain.changefeed.models import SyncConflict
from lms_domain.clock import Clock, SystemClock
from lms_domain.projections import open_projections
from lms_domain.security import DEFAULT_HASHER, Hasher
from server.api import auth, content, courses, health, learning, people
from server.api.docs import add_docs_routes
from server.api.openapi import build_openapi
from server.api.registry import register
from server.auth.verified import VerifiedTokens
from server.contexts import kv_ctx
from server.keys import (
    certificate_renderer_key,
    clock_key,
    engine_key,
    hasher_key,
    openapi_key,
    projections_key,
    read_sessionmaker_key,
    sessionmaker_key,
    settings_key,
    sync_context_key,
    verified_tokens_key,
)
from server.middlewares import problem_middleware, request_id_middleware
from server.pdf.certificate import FpdfCertificateRenderer
from server.settings import Settings
from sync import outbox, state
from sync.client import SyncClient, SyncError
from sync.runner import SyncReport, sync_once

log = logging.getLogger("somo.edge")
EDGE_APIS = (auth, people, courses, content, learning)
LINK_PROBE_S = 15.0


@dataclass
class SyncLoop:
    """The background sync's state, for ``/sync/status``: a failure count drives the backoff."""

    failures: int = 0
    running: bool = False
    next_attempt_in_s: float = 0.0
    last_report: dict[str, Any] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


node_key = web.AppKey("edge_node", OpenNode)
sync_loop_key = web.AppKey("edge_sync_loop", SyncLoop)


async def edge_node_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(open_node(NodeFiles(settings.edge.data_dir), clock=app[clock_key]))
        app[node_key] = node
        app[engine_key] = node.engine
        app[sync_context_key] = node.db.context
        app[sessionmaker_key] = node.db.write
        app[read_sessionmaker_key] = node.db.read
        app[projections_key] = projections = open_projections(node.engine)
        stack.push_async_callback(projections.close)
        yield


async def run_sync(app: web.Application, client: SyncClient) -> SyncReport:
    """One sync now, with the loop's client (which keeps its token between syncs, so a sync
    with nothing to do is one request)."""
    node, loop, settings = app[node_key], app[sync_loop_key], app[settings_key]
    loop.running = True
    try:
        report = await sync_once(
            node.db,
            client,
            batch_rows=settings.sync.batch_rows,
            batch_bytes=settings.sync.batch_bytes,
            asset_dir=node.files.assets,
        )
    finally:
        loop.running = False
    loop.last_report = report.summary()
    return report


async def _link_is_up(central_url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(central_url.rstrip("/") + "/health", timeout=aiohttp.ClientTimeout(total=5)) as response,
        ):
            return response.status < 500
    except (aiohttp.ClientError, TimeoutError):
        return False


def backoff_s(failures: int, *, base_s: float, ceiling_s: float) -> float:
    """Exponential with full jitter: many schools coming back at once do not stampede."""
    return float(random.uniform(0.5, 1.0) * min(ceiling_s, base_s * 2 ** min(failures, 16)))  # noqa: S311


async def sync_loop_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    loop = app[sync_loop_key]
    interval = settings.edge.sync_interval_s

    http = aiohttp.ClientSession()
    client = client_for(app[node_key], http, timeout_s=settings.edge.request_timeout_s)

    async def forever() -> None:
        while True:
            try:
                report = await run_sync(app, client)
                loop.failures = 0
                log.info("sync done", extra=report.summary())
                wait = interval
            except (SyncError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                loop.failures += 1
                wait = backoff_s(loop.failures, base_s=min(interval, 5.0) or 5.0, ceiling_s=settings.edge.backoff_max_s)
                log.warning("sync failed; will retry", extra={"error": str(exc), "retry_in_s": round(wait, 1)})
            except Exception:
                loop.failures += 1
                wait = settings.edge.backoff_max_s
                log.exception("sync crashed; will retry")
            loop.next_attempt_in_s = wait
            await _wait(wait, failing=loop.failures > 0)

    async def _wait(seconds: float, *, failing: bool) -> None:
        deadline = time.monotonic() + seconds
        loop.wake.clear()
        while (left := deadline - time.monotonic()) > 0:
            step = min(left, LINK_PROBE_S) if failing else left
            try:
                await asyncio.wait_for(loop.wake.wait(), timeout=step)
                return  # asked to sync now
            except TimeoutError:
                pass
            if failing and await _link_is_up(app[node_key].identity.central_url):
                return  # the link is back: sync at once rather than sit out the backoff

    task = asyncio.create_task(forever()) if interval > 0 else None
    yield
    if task is not None:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    await http.close()


async def sync_status(request: web.Request) -> web.Response:
    """What a school's technician needs: when it last synced, what waits, what went wrong."""
    app = request.app
    node, loop = app[node_key], app[sync_loop_key]
    async with node.db.read() as session:
        status = await state.read(session, state.STATUS)
        cursor = await state.cursor(session)
        pending = await outbox.pending_count(session)
        conflicts = int(await session.scalar(sa.select(sa.func.count()).select_from(SyncConflict)) or 0)
        identity = await state.identity(session)
    assert identity is not None
    return web.json_response(
        {
            "node_id": str(identity.node_id),
            "institution_id": str(identity.institution_id),
            "central_url": identity.central_url,
            "epoch": identity.epoch,
            "cursor": str(cursor),
            "pending_changes": pending,
            "conflicts": conflicts,
            "last_sync_at": status.get("last_sync_at"),
            "last_attempt_at": status.get("last_attempt_at"),
            "last_error": status.get("last_error"),
            "last_report": status.get("last_report"),
            "syncing": loop.running,
            "failures": loop.failures,
            "next_attempt_in_s": round(loop.next_attempt_in_s, 1),
        }
    )


async def sync_now(request: web.Request) -> web.Response:
    request.app[sync_loop_key].wake.set()
    return web.json_response({"queued": True}, status=202)


def create_edge_app(settings: Settings, *, clock: Clock | None = None, hasher: Hasher | None = None) -> web.Application:
    # request_id first so every later layer carries the id; problem_middleware maps every error.
    app = web.Application(middlewares=[request_id_middleware, problem_middleware], client_max_size=2 * 1024 * 1024)
    app[settings_key] = settings
    app[clock_key] = clock or SystemClock()
    app[certificate_renderer_key] = FpdfCertificateRenderer()
    app[hasher_key] = hasher or DEFAULT_HASHER
    app[verified_tokens_key] = VerifiedTokens()
    app[sync_loop_key] = SyncLoop()
    app.cleanup_ctx.append(edge_node_ctx)
    app.cleanup_ctx.append(kv_ctx)
    app.cleanup_ctx.append(sync_loop_ctx)
    app.add_routes(health.routes)
    app.router.add_get("/sync/status", sync_status)
    app.router.add_post("/sync/now", sync_now)
    apis = [module.api for module in EDGE_APIS] + [renewals.api]
    register(app, apis, prefix="/api/v1")
    app[openapi_key] = build_openapi(apis, prefix="/api/v1", title="Somo edge API", version="1.0.0", server_url="/")
    add_docs_routes(app)
    return app
