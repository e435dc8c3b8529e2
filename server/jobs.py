"""The scheduled jobs: what each does, when it runs, and running one safely.

Every job opens its own sessions, runs one instance at a time across every process sharing
the database (``server.joblock``), and ends with one summary log line. The scheduler
(``server.scheduler``) fires them on their triggers, in the server process or in ``somo
worker``; ``somo jobs run NAME`` runs one now, under the same lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiohttp import web
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.clock import NAIROBI, Clock
from lms_domain.notifications.digest import send_progress_digests
from lms_domain.notifications.service import Senders, deliver, due_notifications
from lms_domain.payments.ports import Gateways
from lms_domain.platform.housekeeping import clean_up
from lms_domain.subscriptions.dunning import Contacts, run_dunning
from lms_domain.subscriptions.invitations import invite_renewals
from server.joblock import JobLocks
from server.settings import Settings

log = logging.getLogger("somo.jobs")

SEND_BATCH = 100


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use; built from the server app or by ``somo worker`` / ``somo jobs``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    gateways: Gateways
    senders: Senders
    locks: JobLocks

    @property
    def contacts(self) -> Contacts:
        return Contacts(ussd_code=self.settings.ussd.service_code, shortcode=self.settings.notifications.sms_shortcode)


JobFn = Callable[[JobContext], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    schedule: str  # for people: `somo jobs list`
    trigger: Callable[[], BaseTrigger]
    run: JobFn


async def renewals(ctx: JobContext) -> dict[str, Any]:
    run = await invite_renewals(
        sessions=ctx.sessions,
        clock=ctx.clock,
        contacts=ctx.contacts,
        notice=timedelta(days=ctx.settings.scheduler.renewal_notice_days),
        batch=ctx.settings.scheduler.batch,
    )
    summary = {"due": run.due, "invited": run.invited, "queued": run.queued, "suppressed": run.suppressed}
    return summary | ({"failed": run.failed} if run.failed else {})


async def dunning(ctx: JobContext) -> dict[str, Any]:
    return await run_dunning(sessions=ctx.sessions, clock=ctx.clock, contacts=ctx.contacts)


async def reconciliation(ctx: JobContext) -> dict[str, Any]:
    from server.reconcile import previous_day, run_reconciliation

    day = previous_day(ctx.clock)
    run = await run_reconciliation(ctx.sessions, ctx.settings, day, clock=ctx.clock)
    return {"day": day.isoformat(), "healed": len(run.report.healed), "open": len(run.report.open)}


async def cleanup(ctx: JobContext) -> dict[str, Any]:
    return await clean_up(sessions=ctx.sessions, now=ctx.clock.now(), batch=ctx.settings.scheduler.batch)


async def send_due(sessions: async_sessionmaker[AsyncSession], senders: Senders, clock: Clock) -> dict[str, int]:
    """Send every queued notification whose time has come; counts by resulting status."""
    outcomes: dict[str, int] = {}
    seen: set[Any] = set()
    while True:
        async with sessions() as session:
            due = [
                i for i in await due_notifications(session=session, now=clock.now(), limit=SEND_BATCH) if i not in seen
            ]
        if not due:
            return outcomes
        for log_id in due:
            seen.add(log_id)
            try:
                status = await deliver(sessions=sessions, senders=senders, log_id=log_id, clock=clock)
            except Exception:  # one message must not stop the rest; its lease brings it back
                log.exception("notification not delivered", extra={"notification_id": str(log_id)})
                key = "error"
            else:
                key = status.value if status else "skipped"
            outcomes[key] = outcomes.get(key, 0) + 1


async def progress_digest(ctx: JobContext) -> dict[str, Any]:
    return await send_progress_digests(sessions=ctx.sessions, clock=ctx.clock)


async def notifications(ctx: JobContext) -> dict[str, Any]:
    return await send_due(ctx.sessions, ctx.senders, ctx.clock)


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        # Cron, not intervals: an interval's first run is one interval after start, so a server
        # restarted more often than that would never run it.
        Job("renewals", "hourly at :05", lambda: CronTrigger(minute=5, timezone=NAIROBI), renewals),
        Job(
            "dunning",
            "every 6 hours (01:20, 07:20, 13:20, 19:20 Nairobi)",
            lambda: CronTrigger(hour="1,7,13,19", minute=20, timezone=NAIROBI),
            dunning,
        ),
        Job(
            "reconciliation",
            "nightly at 02:30 Nairobi",
            lambda: CronTrigger(hour=2, minute=30, timezone=NAIROBI),
            reconciliation,
        ),
        Job("cleanup", "daily at 03:30 Nairobi", lambda: CronTrigger(hour=3, minute=30, timezone=NAIROBI), cleanup),
        Job(
            "notifications",
            "every 15 minutes",
            lambda: CronTrigger(minute="*/15", timezone=NAIROBI),
            notifications,
        ),
        Job(
            "progress-digest",
            "Sundays at 17:00 Nairobi",
            lambda: CronTrigger(day_of_week="sun", hour=17, timezone=NAIROBI),
            progress_digest,
        ),
    )
}


async def run_job(ctx: JobContext, name: str) -> dict[str, Any] | None:
    """Run ``name`` now unless another process is running it: its summary, or None if skipped."""
    job = JOBS[name]
    async with ctx.locks.hold(name) as got:
        if not got:
            log.info("job skipped: running elsewhere", extra={"job": name})
            return None
        started = time.perf_counter()
        try:
            summary = await job.run(ctx)
        except Exception:
            log.exception("job failed", extra={"job": name, "elapsed_s": round(time.perf_counter() - started, 3)})
            raise
    log.info(
        "job finished", extra={"job": name, "elapsed_s": round(time.perf_counter() - started, 3), "summary": summary}
    )
    return summary


def context_of(app: web.Application) -> JobContext:
    """The server app's resources, as a job sees them."""
    from server.keys import (
        clock_key,
        engine_key,
        gateways_key,
        job_locks_key,
        senders_key,
        sessionmaker_key,
        settings_key,
    )

    return JobContext(
        settings=app[settings_key],
        engine=app[engine_key],
        sessions=app[sessionmaker_key],
        clock=app[clock_key],
        gateways=app[gateways_key],
        senders=app[senders_key],
        locks=app[job_locks_key],
    )
