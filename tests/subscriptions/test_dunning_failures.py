"""Dunning when things go wrong: a payment configuration error (ours, not the learner's) pages
the admins by email and holds the learner's attempts; a notification provider that is down
leaves messages queued, never lost; Azure Communication Services as the SMS provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.notifications.models import NotificationChannel, NotificationLog, NotificationStatus, NotificationTry
from lms_domain.notifications.service import RETRY_BASE, SEND_ATTEMPTS
from lms_domain.payments.models import FailureClass
from lms_domain.subscriptions.dunning import DEFAULT_SCHEDULE, HOLD_LIMIT, time_held
from lms_domain.subscriptions.models import RenewalOutcome, SubscriptionRenewalAttempt, SubscriptionStatus
from server.seed import sid
from server.simulators.daraja import Outcome
from tests.subscriptions.conftest import (
    attempts,
    days,
    has_access,
    job,
    messages,
    send,
    set_aside_zawadi,
    subscription,
    travel,
)
from tests.ussd.conftest import AMINA, World, make_world
from tests.ussd.test_sms import replies_to, settle, text_in

# The simulator reports delivery moments after accepting a message; on a busy machine the
# report can land before the send is recorded, and the domain then records it as delivered.
SENT_OR_DELIVERED = ({"sent": 1}, {"delivered": 1})


@pytest.fixture
async def misconfigured(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    """Amina's prompts fail with ResultCode 2028 (TransactionType and PartyB do not match): our
    shortcode set-up, which no learner can fix."""
    world = await make_world(
        database_url, aiohttp_server, aiohttp_client, msisdn_outcomes={"254700000001": Outcome(2028)}
    )
    return await set_aside_zawadi(world)


async def test_a_configuration_error_pages_the_admins_and_holds_the_learners_attempts(misconfigured: World) -> None:
    world = misconfigured
    due = (await subscription(world)).current_period_end
    travel(world, due)
    assert await job(world, "dunning") == {"attempt_1": 1}
    await text_in(world, AMINA, "RENEW")
    await replies_to(world, AMINA, 1)

    async def failed() -> bool:
        return any(a.outcome is RenewalOutcome.FAILED for a in await attempts(world))

    await settle(world, failed, "the prompt to fail")
    [attempt] = await attempts(world)
    assert attempt.failure_class == FailureClass.CONFIGURATION.value
    assert await messages(world, event="payment_failed") == []  # not the learner's doing: not told to retry

    # The clock is held: no reminder is spent, access is kept, the admins are paged daily.
    for offset in (1, 3, 6):
        travel(world, due + days(offset))
        assert await job(world, "dunning") == {"held": 1}
        sub = await subscription(world)
        assert sub.status is SubscriptionStatus.PAST_DUE and sub.grace_until == due + days(offset + 14)
        assert await has_access(world)
    assert len(await messages(world, event="dunning_attempt")) == 1
    # Nobody lifted it: after a week the learner's schedule resumes where it stopped, a week late.
    travel(world, due + days(8))
    assert await job(world, "dunning") == {"attempt_2": 1}
    assert (await subscription(world)).grace_until == due + days(7 + 14)

    # The admins got one email a day at most, through the ACS simulator.
    await send(world)
    async with world.makers() as session:
        alerts = list(
            await session.scalars(
                sa.select(NotificationLog).where(
                    NotificationLog.event == "admin_alert", NotificationLog.channel == NotificationChannel.EMAIL
                )
            )
        )
    assert {a.recipient for a in alerts} == {"bursar@demo-school.example"}
    assert len(alerts) == 4  # the failure itself, then one a day on each of the three held passes
    assert all(a.status is NotificationStatus.SENT for a in alerts)
    emails = await (await world.sim_client.get("/sim/acs/emails")).json()
    assert len(emails) == len(alerts)
    assert emails[0]["to"] == ["bursar@demo-school.example"]
    assert emails[0]["senderAddress"] == "DoNotReply@somo.example"
    assert emails[0]["subject"] == "Somo alert: payment prompts fail on our configuration"
    assert "2028" in emails[0]["plainText"] and "paused" in emails[0]["plainText"]


def test_time_held_counts_from_each_configuration_failure_to_the_next_try() -> None:
    t = datetime(2026, 12, 1, 7, tzinfo=UTC)

    def attempt(
        no: int, created: datetime, outcome: RenewalOutcome, failure: str | None = None
    ) -> SubscriptionRenewalAttempt:
        return SubscriptionRenewalAttempt(
            attempt_no=no,
            created_at=created,
            updated_at=created,
            resolved_at=created,
            outcome=outcome,
            failure_class=failure,
        )

    config = FailureClass.CONFIGURATION.value
    tries = [
        attempt(0, t, RenewalOutcome.FAILED, config),
        attempt(1, t + days(2), RenewalOutcome.FAILED, FailureClass.CUSTOMER.value),
        attempt(2, t + days(3), RenewalOutcome.FAILED, config),
    ]
    assert time_held(tries, t, t + days(5)) == days(2) + days(2)  # 0 -> 1, then 2 -> now
    assert time_held(tries[:2], t, t + days(5)) == days(2)
    assert time_held(tries, t, t + days(30)) == HOLD_LIMIT  # a hold nobody lifts ends
    assert time_held(tries[:2], t + days(1), t + days(5)) == days(1)  # counted from the due date
    assert time_held([], t, t) == timedelta(0)
    anchor = t + time_held(tries, t, t + days(5))
    assert DEFAULT_SCHEDULE.access_until(anchor) == t + days(4 + 7 + 7)


@pytest.fixture
async def acs_world(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    world = await make_world(database_url, aiohttp_server, aiohttp_client, notifications={"sms_provider": "acs"})
    return await set_aside_zawadi(world)


async def test_notifications_can_go_by_azure_communication_services_sms(acs_world: World) -> None:
    world = acs_world
    assert (await job(world, "renewals"))["queued"] == 1
    assert await send(world) in SENT_OR_DELIVERED
    sent = await (await world.sim_client.get("/sim/acs/sms")).json()
    assert [m["to"] for m in sent] == [AMINA]
    assert sent[0]["message"].startswith("Hi Amina Wanjiru, your Somo Premium (KES 300)")
    at_messages = await (await world.sim_client.get("/sim/at/messages")).json()
    assert at_messages == []  # nothing went through Africa's Talking


@pytest.fixture
async def provider_down(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    world = await make_world(
        database_url, aiohttp_server, aiohttp_client, notifications={"at_base_url": "http://127.0.0.1:9"}
    )
    return await set_aside_zawadi(world)


async def test_a_provider_that_is_down_leaves_the_message_queued_for_retry(provider_down: World) -> None:
    world = provider_down
    await job(world, "renewals")
    [invite] = await messages(world, event="renewal_due")
    for attempt in range(1, SEND_ATTEMPTS):
        assert await send(world) == {"queued": 1}
        entry = (await messages(world, event="renewal_due"))[0]
        assert entry.status is NotificationStatus.QUEUED and entry.attempts == attempt
        assert entry.scheduled_for == world.clock.now() + RETRY_BASE * 4 ** (attempt - 1)
        assert await send(world) == {}  # waits for its backoff
        travel(world, entry.scheduled_for)
    assert await send(world) == {"failed": 1}
    entry = (await messages(world, event="renewal_due"))[0]
    assert entry.id == invite.id and entry.status is NotificationStatus.FAILED and entry.error
    async with world.makers() as session:
        tries = await session.scalar(
            sa.select(sa.func.count(NotificationTry.id)).where(NotificationTry.notification_id == invite.id)
        )
    assert tries == SEND_ATTEMPTS


@pytest.fixture
async def silent_prompt(database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient) -> World:
    """Amina's prompts are accepted, and then nothing: no callback (the phone is in her pocket)."""
    world = await make_world(
        database_url, aiohttp_server, aiohttp_client, msisdn_outcomes={"254700000001": Outcome(0, callback=False)}
    )
    return await set_aside_zawadi(world)


async def test_cash_is_refused_while_the_learners_own_prompt_is_open(silent_prompt: World) -> None:
    from lms_domain.access import Actor
    from lms_domain.errors import Conflict
    from lms_domain.payments.renewals import record_manual_renewal
    from lms_domain.tenancy.models import Role

    world = silent_prompt
    await text_in(world, AMINA, "RENEW")
    await replies_to(world, AMINA, 1)

    async def approved() -> bool:
        return any(a.outcome is RenewalOutcome.APPROVED for a in await attempts(world))

    await settle(world, approved, "the approval")
    sub = await subscription(world)
    bursar = Actor(user_id=sid("user", "admin"), role=Role.INSTITUTION_ADMIN, institution_id=sub.institution_id)
    async with world.makers() as session, session.begin():
        with pytest.raises(Conflict) as refused:
            await record_manual_renewal(
                session=session,
                actor=bursar,
                subscription_id=sub.id,
                amount_minor=30000,
                reference="RB-0001",
                paid_at=None,
                clock=world.clock,
            )
    assert refused.value.code == "renewal_prompt_open"  # paying twice for one period is what it prevents
    assert (await subscription(world)).current_period_end == sub.current_period_end
