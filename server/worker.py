"""``somo worker`` and ``somo jobs``: the scheduled jobs outside the web server.

A deployment with several server replicas sets ``SOMO_SCHEDULER__ENABLED=false`` on them and
runs one worker (or more: the jobs' locks make extra workers idle, not harmful). The worker
holds the same resources a job sees in the server (database, store, provider gateways,
senders), made by the same cleanup contexts.
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

from lms_domain.clock import Clock
from server.jobs import JOBS, JobContext, run_job
from server.settings import Settings

log = logging.getLogger("somo.worker")
HEARTBEAT = Path(tempfile.gettempdir()) / "somo-worker.alive"
HEARTBEAT_S = 30.0


@contextlib.asynccontextmanager
async def job_context(settings: Settings, clock: Clock | None = None) -> AsyncIterator[JobContext]:
    """The resources a job sees in the server, built by the server's own cleanup contexts."""
    from aiohttp import web

    import lms_domain.models  # noqa: F401 - every table mapped, so foreign keys resolve
    from server.app import create_job_app
    from server.jobs import context_of

    runner = web.AppRunner(create_job_app(settings, clock=clock))
    await runner.setup()  # runs the contexts; no site, so nothing listens
    try:
        yield context_of(runner.app)
    finally:
        await runner.cleanup()


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
