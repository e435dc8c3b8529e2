"""APScheduler 3 fires the jobs of ``server.jobs`` on their triggers (Nairobi time).

In the server process by default (``SOMO_SCHEDULER__ENABLED``); a deployment with several
replicas turns that off and runs ``somo worker``. Within a process APScheduler runs one
instance of a job at a time (``max_instances=1``) and folds missed runs into one
(``coalesce``); across processes ``JobLocks`` does the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lms_domain.clock import NAIROBI
from server.jobs import JOBS, JobContext, context_of, run_job
from server.keys import settings_key

log = logging.getLogger("somo.scheduler")
SHUTDOWN_GRACE_S = 10.0


def build_scheduler(ctx: JobContext, in_flight: set[asyncio.Task[Any]] | None = None) -> AsyncIOScheduler:
    """The scheduler for every job the settings switch on; the runs under way are kept in
    ``in_flight``, so a shutdown can wait for them before the database goes."""
    runs = in_flight if in_flight is not None else set()

    async def fire(name: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        runs.add(task)
        try:
            with contextlib.suppress(Exception):  # logged by run_job; the next trigger runs as planned
                await run_job(ctx, name)
        finally:
            runs.discard(task)

    scheduler = AsyncIOScheduler(
        timezone=NAIROBI,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
    )
    for job in JOBS.values():
        trigger = job.trigger(ctx.settings)
        if trigger is not None:
            scheduler.add_job(fire, trigger=trigger, args=[job.name], id=job.name, name=job.name)
    return scheduler


@contextlib.asynccontextmanager
async def running(ctx: JobContext) -> AsyncIterator[AsyncIOScheduler]:
    in_flight: set[asyncio.Task[Any]] = set()
    scheduler = build_scheduler(ctx, in_flight)
    scheduler.start()
    log.info(
        "scheduler started",
        extra={"jobs": {job.id: str(job.next_run_time) for job in scheduler.get_jobs()}, "lock": ctx.locks.kind},
    )
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        # Runs under way must end (their sessions closed) before the caller closes the database
        # under them: a few seconds to finish their batch, then cut short (which rolls back).
        if in_flight:
            await asyncio.wait(list(in_flight), timeout=SHUTDOWN_GRACE_S)
        for task in list(in_flight):
            task.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs the jobs for the app's lifetime, when the settings say this process should."""
    if not app[settings_key].scheduler.enabled:
        yield
        return
    async with running(context_of(app)):
        yield
