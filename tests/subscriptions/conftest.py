"""Time travel through renewals and dunning: the USSD world (server, demo data, Daraja, Airtel,
Africa's Talking and ACS simulators), its clock moved by hand, and the jobs run as the
scheduler runs them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.clock import NAIROBI
from lms_domain.entitlements.service import has_active_entitlement
from lms_domain.notifications.models import NotificationLog, NotificationTry
from lms_domain.notifications.quiet_hours import DEFAULT_QUIET_HOURS
from lms_domain.subscriptions.models import Subscription, SubscriptionRenewalAttempt, SubscriptionStatus
from server.jobs import context_of, run_job
from server.seed import sid
from tests.ussd.conftest import World, make_world

AMINA_SUB = sid("subscription", "amina")
AMINA = sid("learner", "amina")
COURSE = sid("course", "form2-maths")


async def set_aside_zawadi(world: World) -> World:
    """Zawadi's subscription, past due in the demo data, cancelled: each job's summary then
    counts Amina alone."""
    async with world.makers() as session, session.begin():
        await session.execute(
            sa.update(Subscription)
            .where(Subscription.id == sid("subscription", "zawadi"))
            .values(status=SubscriptionStatus.CANCELLED)
        )
    return world


@pytest.fixture
async def world(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    return await set_aside_zawadi(await make_world(database_url, aiohttp_server, aiohttp_client))


async def job(world: World, name: str) -> dict[str, Any]:
    summary = await run_job(context_of(world.app), name)
    assert summary is not None, f"{name} was skipped"
    return summary


def travel(world: World, to: datetime) -> None:
    assert to >= world.clock.now(), "time only moves forward"
    world.clock.advance(to - world.clock.now())


def nairobi(at: datetime, hour: int, minute: int = 0) -> datetime:
    """``at``'s Nairobi day at ``hour:minute``, as a UTC instant."""
    local = at.astimezone(NAIROBI)
    return local.replace(hour=hour, minute=minute, second=0, microsecond=0).astimezone(at.tzinfo)


async def subscription(world: World, sub_id: Any = AMINA_SUB) -> Subscription:
    async with world.makers() as session:
        found = await session.get(Subscription, sub_id)
        assert found is not None
        return found


async def attempts(world: World, sub_id: Any = AMINA_SUB) -> list[SubscriptionRenewalAttempt]:
    async with world.makers() as session:
        return list(
            await session.scalars(
                sa.select(SubscriptionRenewalAttempt)
                .where(SubscriptionRenewalAttempt.subscription_id == sub_id)
                .order_by(SubscriptionRenewalAttempt.period_start, SubscriptionRenewalAttempt.attempt_no)
            )
        )


async def messages(world: World, learner_id: Any = AMINA, event: str | None = None) -> list[NotificationLog]:
    async with world.makers() as session:
        stmt = sa.select(NotificationLog).where(NotificationLog.learner_id == learner_id)
        if event is not None:
            stmt = stmt.where(NotificationLog.event == event)
        return list(await session.scalars(stmt.order_by(NotificationLog.created_at, NotificationLog.id)))


async def has_access(world: World, learner_id: Any = AMINA) -> bool:
    async with world.makers() as session:
        return await has_active_entitlement(
            session=session, learner_id=learner_id, course_id=COURSE, at=world.clock.now()
        )


async def send(world: World) -> dict[str, int]:
    return await job(world, "notifications")


async def assert_nothing_sent_in_quiet_hours(world: World) -> None:
    """The acceptance rule: no notification try, ever, between 22:00 and 07:00 Nairobi."""
    async with world.makers() as session:
        tries = (
            await session.execute(
                sa.select(NotificationTry.tried_at, NotificationLog.event)
                .join(NotificationLog, NotificationLog.id == NotificationTry.notification_id)
                .where(NotificationLog.event.not_in(["sms_reply", "admin_alert"]))
            )
        ).all()
    assert tries, "the path sent nothing at all"
    loud = [(at.astimezone(NAIROBI).isoformat(), event) for at, event in tries if DEFAULT_QUIET_HOURS.is_quiet(at)]
    assert not loud, loud


def days(n: float) -> timedelta:
    return timedelta(days=n)
