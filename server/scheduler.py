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

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lms_domain.clock import NAIROBI
from server.jobs import JOBS, JobContext, context_of, run_job
from server.keys import settings_key

log = logging.getLogger("somo.scheduler")


def build_scheduler(ctx: JobContext) -> AsyncIOScheduler:
    async def fire(name: str) -> None:
        with contextlib.suppress(Exception):  # logged by run_job; the next trigger runs as planned
            await run_job(ctx, name)

    scheduler = AsyncIOScheduler(
        timezone=NAIROBI,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 15 * 60},
    )
    for job in JOBS.values():
        scheduler.add_job(fire, trigger=job.trigger(), args=[job.name], id=job.name, name=job.name)
    return scheduler


@contextlib.asynccontextmanager
async def running(ctx: JobContext) -> AsyncIterator[AsyncIOScheduler]:
    scheduler = build_scheduler(ctx)
    scheduler.start()
    log.info(
        "scheduler started",
        extra={"jobs": {job.id: str(job.next_run_time) for job in scheduler.get_jobs()}, "lock": ctx.locks.kind},
    )
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)  # let APScheduler's own shutdown callbacks run on this loop


async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs the jobs for the app's lifetime, when the settings say this process should."""
    if not app[settings_key].scheduler.enabled:
        yield
        return
    async with running(context_of(app)):
        yield
