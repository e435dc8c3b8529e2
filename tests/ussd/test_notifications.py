"""Notifications by SMS: queued with the payment they confirm, sent through the AT simulator,
and never sent to a learner who texted STOP, whether before the cause or after queuing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from lms_domain.notifications.models import NotificationLog, NotificationStatus, NotificationTry
from lms_domain.notifications.ports import SmsRecipientResult, SmsSendResult
from lms_domain.notifications.service import CLAIM_LEASE, RETRY_BASE, SEND_ATTEMPTS, Senders, deliver, notify_learner
from lms_domain.subscriptions.models import Subscription
from server.jobs import context_of, run_job
from server.keys import phone_channels_key
from server.seed import sid
from tests.conftest import T0
from tests.factories import make_learner
from tests.ussd.conftest import AMINA, World
from tests.ussd.test_sms import replies_to, text_in

# The simulator reports delivery moments after accepting a message; on a busy machine the
# report can land before the send is recorded, and the domain then records it as delivered.
SENT_OR_DELIVERED = ({"sent": 1}, {"delivered": 1})


async def send_due(app: web.Application) -> dict[str, int] | None:
    """The notifications job, as the scheduler runs it."""
    return await run_job(context_of(app), "notifications")


async def _renew_amina(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234", "3", "1", "1")

    async def paid() -> bool:
        found = await world.scalar(sa.select(Subscription).where(Subscription.id == sid("subscription", "amina")))
        return bool(found.current_period_end > T0 + timedelta(days=30))

    await world.settle(paid, "the renewal")


async def _thanks(world: World) -> NotificationLog:
    return await world.scalar(
        sa.select(NotificationLog).where(
            NotificationLog.event == "payment_received", NotificationLog.learner_id == sid("learner", "amina")
        )
    )


async def test_a_renewal_paid_on_ussd_is_confirmed_by_sms(world: World) -> None:
    await _renew_amina(world)
    queued = await _thanks(world)
    assert queued.status is NotificationStatus.QUEUED and queued.recipient == AMINA
    assert await send_due(world.app) in SENT_OR_DELIVERED
    assert await send_due(world.app) == {}  # sent once
    [message] = await replies_to(world, AMINA, 1)
    assert message.startswith("Thank you Amina Wanjiru. We received KES 300, receipt "), message
    sent = await _thanks(world)
    assert sent.status in (NotificationStatus.SENT, NotificationStatus.DELIVERED)  # the report may be back
    assert sent.provider_message_id and sent.segments == 1


async def test_a_learner_who_texted_stop_gets_no_notification(world: World) -> None:
    await text_in(world, AMINA, "STOP")
    await replies_to(world, AMINA, 1)  # the confirmation of STOP itself
    await _renew_amina(world)
    assert (await _thanks(world)).status is NotificationStatus.SUPPRESSED
    assert await send_due(world.app) == {}
    assert len(await replies_to(world, AMINA, 1)) == 1


async def test_stop_after_queuing_still_stops_the_message(world: World) -> None:
    await _renew_amina(world)
    await text_in(world, AMINA, "SIMAMISHA")
    await replies_to(world, AMINA, 1)
    assert await send_due(world.app) == {"suppressed": 1}
    assert (await _thanks(world)).status is NotificationStatus.SUPPRESSED


async def test_a_retryable_failure_is_retried_with_backoff_then_given_up(world: World) -> None:
    async with world.makers() as session, session.begin():
        learner = await make_learner(session, name="Wafula Retry", phone="+254711000008")  # AT answers 500
        queued = await notify_learner(
            session=session,
            learner_id=learner.id,
            event="subscription_cancelled",
            values={},
            dedupe_key="expired:test",
            now=T0,
        )
        again = await notify_learner(
            session=session,
            learner_id=learner.id,
            event="subscription_cancelled",
            values={},
            dedupe_key="expired:test",
            now=T0,
        )
    assert len(queued) == 1 and again == []  # queued once per dedupe key
    [log_id] = queued
    senders = Senders(sms=world.app[phone_channels_key].sender, contacts={"ussd_code": "*384*123#"})
    for attempt in range(1, SEND_ATTEMPTS + 1):
        status = await deliver(sessions=world.makers, senders=senders, log_id=log_id, clock=world.clock)
        expected = NotificationStatus.QUEUED if attempt < SEND_ATTEMPTS else NotificationStatus.FAILED
        assert status is expected, attempt
        if attempt < SEND_ATTEMPTS:
            backoff = RETRY_BASE * 4 ** (attempt - 1)
            world.clock.advance(backoff - timedelta(seconds=1))
            # Not before its backoff has passed.
            assert await deliver(sessions=world.makers, senders=senders, log_id=log_id, clock=world.clock) is None
            world.clock.advance(timedelta(seconds=1))
    entry = await world.scalar(sa.select(NotificationLog).where(NotificationLog.id == log_id))
    assert entry.attempts == SEND_ATTEMPTS and entry.error == "InternalServerError"
    assert entry.body == "Hi Wafula Retry, your Somo subscription has ended. Dial *384*123# to renew."
    tries = await world.scalar(
        sa.select(sa.func.count(NotificationTry.id)).where(NotificationTry.notification_id == log_id)
    )
    assert tries == SEND_ATTEMPTS  # every try is in the log


class RecordingSender:
    """An SmsSender that answers like AT with a known message id: the one way to make AT's
    delivery report arrive, deterministically, before the send has returned."""

    def __init__(self, before_return: Any) -> None:
        self.before_return = before_return

    async def send(self, message: str, recipients: Sequence[str], *, sender_id: str | None = None) -> SmsSendResult:
        await self.before_return()
        return SmsSendResult(
            recipients=tuple(
                SmsRecipientResult(
                    number=r,
                    accepted=True,
                    status="Success",
                    status_code=102,
                    message_id="ATXid_early",
                    cost_minor=80,
                    retryable=False,
                )
                for r in recipients
            ),
            parts=1,
            summary="Sent to 1/1 Total Cost: KES 0.8000 Message parts: 1",
        )


async def test_a_delivery_report_that_overtakes_its_send_is_not_lost(world: World) -> None:
    async with world.makers() as session, session.begin():
        [log_id] = await notify_learner(
            session=session,
            learner_id=sid("learner", "amina"),
            event="subscription_cancelled",
            values={},
            dedupe_key="expired:early",
            now=T0,
        )

    async def report_first() -> None:
        response = await world.client.post(
            "/sms/africastalking/delivery",
            data={"id": "ATXid_early", "status": "Failed", "failureReason": "UserInBlackList"},
        )
        assert (await response.json()) == {"stored": True}

    status = await deliver(
        sessions=world.makers, senders=Senders(sms=RecordingSender(report_first)), log_id=log_id, clock=world.clock
    )
    assert status is NotificationStatus.FAILED
    entry = await world.scalar(sa.select(NotificationLog).where(NotificationLog.id == log_id))
    assert (entry.status, entry.error, entry.provider_message_id) == (
        NotificationStatus.FAILED,
        "UserInBlackList",
        "ATXid_early",
    )


class CrashingSender:
    """A sender whose process "dies" mid-send: anything but a provider's answer."""

    async def send(self, message: str, recipients: Sequence[str], *, sender_id: str | None = None) -> SmsSendResult:
        raise RuntimeError("killed mid-send")


async def test_a_send_that_dies_mid_way_is_sent_again_when_its_lease_ends(world: World) -> None:
    async with world.makers() as session, session.begin():
        [log_id] = await notify_learner(
            session=session,
            learner_id=sid("learner", "amina"),
            event="subscription_cancelled",
            values={},
            dedupe_key="lease:test",
            now=T0,
        )
    with pytest.raises(RuntimeError):
        await deliver(sessions=world.makers, senders=Senders(sms=CrashingSender()), log_id=log_id, clock=world.clock)
    entry = await world.scalar(sa.select(NotificationLog).where(NotificationLog.id == log_id))
    assert entry.status is NotificationStatus.QUEUED and entry.attempts == 1  # claimed, not lost
    assert entry.scheduled_for == world.clock.now() + CLAIM_LEASE
    senders = Senders(sms=world.app[phone_channels_key].sender, contacts={"ussd_code": "*384*123#"})
    assert await deliver(sessions=world.makers, senders=senders, log_id=log_id, clock=world.clock) is None  # leased
    world.clock.advance(CLAIM_LEASE)
    assert await deliver(sessions=world.makers, senders=senders, log_id=log_id, clock=world.clock) in (
        NotificationStatus.SENT,
        NotificationStatus.DELIVERED,  # the simulator's delivery report may land first
    )
    [message] = await replies_to(world, AMINA, 1)
    assert message == "Hi Amina Wanjiru, your Somo subscription has ended. Dial *384*123# to renew."
