"""Acceptance: two scheduler processes on the same Postgres make exactly one dunning attempt
(and send one reminder) per subscription, period and step. Real processes, started on the same
instant, with the job lock out of the way: the database's unique constraints and row locks are
what is tested."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.notifications.models import NotificationLog
from lms_domain.subscriptions.models import Subscription, SubscriptionRenewalAttempt, SubscriptionStatus
from tests.conftest import T0
from tests.factories import make_institution, make_learner, make_subscription

ROOT = Path(__file__).resolve().parents[2]
LEARNERS = 80

pytestmark = pytest.mark.backend_only("postgres")


async def _two_processes(database_url: str, at: datetime, rounds: int = 2) -> list[dict[str, int]]:
    start = time.time() + 4  # both interpreters are up and connected by then
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.subscriptions.race_worker",
            database_url,
            at.isoformat(),
            str(start),
            str(rounds),
            str(seed),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in range(2)
    ]
    results = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == 0, err.decode()[-2000:]
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return results


async def _counts(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[int, int, int, int]:
    async with sessionmaker() as session:
        attempts = await session.scalar(sa.select(sa.func.count(SubscriptionRenewalAttempt.id)))
        slots = await session.scalar(
            sa.select(sa.func.count()).select_from(
                sa.select(
                    SubscriptionRenewalAttempt.subscription_id,
                    SubscriptionRenewalAttempt.period_start,
                    SubscriptionRenewalAttempt.dunning_step,
                )
                .distinct()
                .subquery()
            )
        )
        reminders = await session.scalar(
            sa.select(sa.func.count(NotificationLog.id)).where(NotificationLog.event == "dunning_attempt")
        )
        past_due = await session.scalar(
            sa.select(sa.func.count(Subscription.id)).where(Subscription.status == SubscriptionStatus.PAST_DUE)
        )
    return attempts or 0, slots or 0, reminders or 0, past_due or 0


async def test_two_processes_make_one_attempt_per_slot(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    due = T0 - timedelta(hours=1)
    async with sessionmaker() as session, session.begin():
        school = await make_institution(session)
        for n in range(LEARNERS):
            learner = await make_learner(session, institution=school, name=f"Learner {n}", phone=f"+2547110{n:05d}")
            await make_subscription(session, learner=learner, due=due)

    first = await _two_processes(database_url, T0)
    made = sum(r.get("attempt_1", 0) for r in first)
    assert made == LEARNERS, first  # between them, each subscription's step 1 once
    assert await _counts(sessionmaker) == (LEARNERS, LEARNERS, LEARNERS, LEARNERS)

    second = await _two_processes(database_url, T0 + timedelta(days=1))
    assert sum(r.get("attempt_2", 0) for r in second) == LEARNERS, second
    assert await _counts(sessionmaker) == (2 * LEARNERS, 2 * LEARNERS, 2 * LEARNERS, LEARNERS)
