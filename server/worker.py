"""``somo worker`` and ``somo jobs``: the scheduled jobs outside the web server.

A deployment with several server replicas sets ``SOMO_SCHEDULER__ENABLED=false`` on them and
runs one worker (or more: the jobs' locks make extra workers idle, not harmful). The worker
holds the same resources a job sees in the server: database, provider gateways, senders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from lms_domain.clock import Clock, SystemClock
from server.joblock import JobLocks
from server.jobs import JOBS, JobContext, run_job
from server.settings import Settings

log = logging.getLogger("somo.worker")
HEARTBEAT = Path(tempfile.gettempdir()) / "somo-worker.alive"
HEARTBEAT_S = 30.0


@contextlib.asynccontextmanager
async def job_context(settings: Settings, clock: Clock | None = None) -> AsyncIterator[JobContext]:
    import lms_domain.models  # noqa: F401 - every table mapped, so foreign keys resolve
    from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
    from lms_domain.db import create_engine, make_sessionmaker
    from server.kv import RedisStore
    from server.notifiers import build_senders
    from server.providers.gateways import ProviderGateways

    clock = clock or SystemClock()
    settings.database.ensure_sqlite_dir()
    engine = create_engine(settings.database.url, pool_size=settings.database.pool_size)
    install_change_capture()  # jobs write synced rows (subscriptions, entitlements)
    sessions = make_sessionmaker(engine, SyncContext(node_id=settings.sync.node_id, role=NodeRole.CENTRAL, clock=clock))
    redis = RedisStore.from_url(settings.redis.url) if settings.redis.url else None
    try:
        async with aiohttp.ClientSession() as http:
            yield JobContext(
                settings=settings,
                engine=engine,
                sessions=sessions,
                clock=clock,
                gateways=ProviderGateways(settings, http, clock),
                senders=build_senders(settings),
                locks=JobLocks(engine, redis.client if redis else None),
            )
    finally:
        if redis is not None:
            await redis.close()
        await engine.dispose()


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the scheduler until SIGTERM/SIGINT (or ``stop``)."""
    from server.scheduler import running

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with job_context(settings) as ctx, running(ctx):
        log.info("worker running", extra={"jobs": sorted(JOBS), "lock": ctx.locks.kind})
        while not stop.is_set():
            HEARTBEAT.touch()  # the container's health check reads its age
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_S)
    log.info("worker stopped")


async def run_job_now(settings: Settings, name: str) -> dict[str, Any] | None:
    async with job_context(settings) as ctx:
        return await run_job(ctx, name)
