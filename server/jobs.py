"""The scheduled jobs: what each does, when it runs, and running one safely.

All the server's periodic work is here, from asking providers about silent payments every
30 seconds to the nightly reconciliation. Every job opens its own sessions, runs one instance
at a time across every process sharing the database (``server.joblock``), and ends with one
summary log line (at debug level for the frequent ones when they found nothing to do). The
scheduler (``server.scheduler``) fires them on their triggers, in the server process or in
``somo worker``; ``somo jobs run NAME`` runs one now, under the same lock.
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
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import NAIROBI, Clock
from lms_domain.notifications.digest import send_progress_digests
from lms_domain.notifications.service import Senders, deliver, due_notifications
from lms_domain.payments import flows
from lms_domain.payments.models import IntentStatus
from lms_domain.payments.ports import Gateways
from lms_domain.payments.queued_renewals import send_queued_renewals
from lms_domain.platform.housekeeping import clean_up
from lms_domain.subscriptions.dunning import run_dunning
from lms_domain.subscriptions.invitations import invite_renewals
from server.joblock import JobLocks
from server.settings import Settings
from sync.tombstones import collect_central

log = logging.getLogger("somo.jobs")

SEND_BATCH = 100


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job may use; built from the server app or by ``somo worker`` / ``somo jobs``."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    gateways: Gateways
    senders: Senders
    locks: JobLocks


JobFn = Callable[[JobContext], Awaitable[dict[str, Any]]]


Trigger = Callable[[Settings], BaseTrigger | None]  # None: switched off by the settings


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    schedule: str  # for people: `somo jobs list`
    trigger: Trigger
    run: JobFn
    frequent: bool = False  # an idle run is logged at debug level only


def cron(**fields: Any) -> Trigger:
    """Nairobi wall-clock times. Cron rather than intervals for the slow jobs: an interval's
    first run is one interval after start, so a server restarted more often would never run it."""
    return lambda _settings: CronTrigger(timezone=NAIROBI, **fields)


def every(seconds: Callable[[Settings], float]) -> Trigger:
    return lambda settings: IntervalTrigger(seconds=seconds(settings)) if seconds(settings) > 0 else None


async def payments_poll(ctx: JobContext) -> dict[str, Any]:
    """Ask the providers about intents with no answer (lost callbacks): STK Query for M-Pesa
    (which also retries inbox rows still waiting for their intent), an enquiry for Airtel."""
    results = await flows.poll_silent_intents(
        sessions=ctx.sessions,
        gateways=ctx.gateways,
        clock=ctx.clock,
        older_than=timedelta(seconds=ctx.settings.payments.poll_after_s),
    )
    return {
        "asked": len(results),
        "settled": sum(status is IntentStatus.SUCCEEDED for status in results.values()),
        "failed": sum(status is IntentStatus.FAILED for status in results.values()),
    }


async def queued_renewals(ctx: JobContext) -> dict[str, Any]:
    """Renewals approved at schools' edge nodes, arrived by sync: one prompt each."""
    return await send_queued_renewals(sessions=ctx.sessions, gateways=ctx.gateways, clock=ctx.clock)


async def sync_tombstones(ctx: JobContext) -> dict[str, Any]:
    """Deleted rows every node has pulled past, and the feed entries nothing needs any more."""
    async with ctx.sessions() as session, session.begin():
        done = await collect_central(session)
    return {"feeds": done.feeds, "rows": done.rows, "feed_entries": done.feed_entries}


async def renewals(ctx: JobContext) -> dict[str, Any]:
    run = await invite_renewals(
        sessions=ctx.sessions,
        clock=ctx.clock,
        notice=timedelta(days=ctx.settings.scheduler.renewal_notice_days),
        batch=ctx.settings.scheduler.batch,
    )
    summary = {"due": run.due, "invited": run.invited, "queued": run.queued, "suppressed": run.suppressed}
    return summary | ({"failed": run.failed} if run.failed else {})


async def dunning(ctx: JobContext) -> dict[str, Any]:
    return await run_dunning(sessions=ctx.sessions, clock=ctx.clock)


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
        Job(
            "payments-poll",
            "every SOMO_PAYMENTS__POLL_INTERVAL_S (30 s)",
            every(lambda s: s.payments.poll_interval_s),
            payments_poll,
            frequent=True,
        ),
        # The "every 15 minutes" is the longest a due message may wait; a receipt should
        # reach the learner while they still hold the phone, so the default is 10 seconds.
        Job(
            "notifications",
            "every SOMO_NOTIFICATIONS__SEND_INTERVAL_S (10 s)",
            every(lambda s: s.notifications.send_interval_s),
            notifications,
            frequent=True,
        ),
        Job("renewals", "hourly at :05", cron(minute=5), renewals),
        Job(
            "dunning", "every 6 hours (01:20, 07:20, 13:20, 19:20 Nairobi)", cron(hour="1,7,13,19", minute=20), dunning
        ),
        Job("reconciliation", "nightly at 02:30 Nairobi", cron(hour=2, minute=30), reconciliation),
        Job("cleanup", "daily at 03:30 Nairobi", cron(hour=3, minute=30), cleanup),
        Job("progress-digest", "Sundays at 17:00 Nairobi", cron(day_of_week="sun", hour=17), progress_digest),
        Job(
            "queued-renewals",
            "every SOMO_PAYMENTS__POLL_INTERVAL_S (30 s)",
            every(lambda s: s.payments.poll_interval_s),
            queued_renewals,
            frequent=True,
        ),
        Job("sync-tombstones", "daily at 03:45 Nairobi", cron(hour=3, minute=45), sync_tombstones),
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
    idle = job.frequent and not any(summary.values())
    log.log(
        logging.DEBUG if idle else logging.INFO,
        "job finished",
        extra={"job": name, "elapsed_s": round(time.perf_counter() - started, 3), "summary": summary},
    )
    return summary


def context_of(app: web.Application) -> JobContext:
    """The server app's resources, as a job sees them."""
    from server.keys import (
        clock_key,
        gateways_key,
        job_locks_key,
        senders_key,
        sessionmaker_key,
        settings_key,
    )

    return JobContext(
        settings=app[settings_key],
        sessions=app[sessionmaker_key],
        clock=app[clock_key],
        gateways=app[gateways_key],
        senders=app[senders_key],
        locks=app[job_locks_key],
    )
