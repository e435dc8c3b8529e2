"""Acceptance: a subscription taken through the whole dunning path, for each outcome, with the
clock moved by hand and the jobs run as the scheduler runs them. Amina (+254700000001) is due
three days after the demo data's T0 (10:00 Nairobi); her M-Pesa prompts succeed in the Daraja
simulator, so approving by SMS pays."""

from __future__ import annotations

import sqlalchemy as sa

from lms_domain.commerce.models import Price, PriceInterval, Product, ProductKind
from lms_domain.ids import new_id
from lms_domain.notifications.models import NotificationStatus
from lms_domain.subscriptions.models import RenewalOutcome, Subscription, SubscriptionStatus
from server.seed import sid
from tests.subscriptions.conftest import (
    AMINA_SUB,
    assert_nothing_sent_in_quiet_hours,
    attempts,
    days,
    has_access,
    job,
    messages,
    nairobi,
    send,
    subscription,
    travel,
)
from tests.ussd.conftest import AMINA, World
from tests.ussd.test_sms import replies_to, settle, text_in

# The simulator reports delivery moments after accepting a message; on a busy machine the
# report can land before the send is recorded, and the domain then records it as delivered.
SENT_OR_DELIVERED = ({"sent": 1}, {"delivered": 1})


async def _approve_by_sms(world: World, replies_before: int) -> None:
    """Amina replies RENEW; the prompt is answered and the callback settles the renewal."""
    due = (await subscription(world)).current_period_end
    await text_in(world, AMINA, "RENEW")
    await replies_to(world, AMINA, replies_before + 1)

    async def renewed() -> bool:
        return (await subscription(world)).current_period_end > due

    await settle(world, renewed, "the renewal to settle")


async def _sms_count(world: World) -> int:
    return len(await (await world.sim_client.get("/sim/at/messages")).json())


async def test_invited_before_the_due_date_and_paid_at_attempt_1(world: World) -> None:
    due = (await subscription(world)).current_period_end
    assert await job(world, "renewals") == {"due": 1, "invited": 1, "queued": 1, "suppressed": 0}
    assert (await job(world, "renewals"))["invited"] == 0  # the next hourly run invites nobody twice
    [invite] = await messages(world, event="renewal_due")
    # The demo school's own wording, over the built-in text; contact points filled in.
    assert invite.body.startswith("Hi Amina Wanjiru, your Somo Premium (KES 300) renews on 30/11/2026. Reply RENEW")
    assert await send(world) in SENT_OR_DELIVERED
    [invite] = await messages(world, event="renewal_due")  # as sent: the contact points filled
    assert "*384*123#" in invite.body and invite.body.endswith("Demo School")

    travel(world, due)
    assert await job(world, "dunning") == {"attempt_1": 1}
    sub = await subscription(world)
    assert sub.status is SubscriptionStatus.PAST_DUE and sub.grace_until == due + days(14)
    assert await has_access(world)  # past due keeps access while the learner is reminded
    [step0, step1] = await attempts(world)
    assert (step0.dunning_step, step0.outcome) == (0, RenewalOutcome.EXPIRED)
    assert (step1.dunning_step, step1.outcome) == (1, RenewalOutcome.INVITED)
    [reminder] = await messages(world, event="dunning_attempt")
    assert "Access ends 14/12/2026" in reminder.body

    await _approve_by_sms(world, replies_before=await _sms_count(world))
    sub = await subscription(world)
    assert sub.status is SubscriptionStatus.ACTIVE and sub.current_period_start == due and sub.grace_until is None
    [_, paid] = await attempts(world)
    assert paid.outcome is RenewalOutcome.SUCCEEDED and paid.payment_intent_id is not None
    # Payment stops the dunning at once: the next passes find nothing to do.
    for later in (1, 3, 7, 14):
        travel(world, due + days(later))
        assert await job(world, "dunning") == {}  # active and not due: not even looked at
    assert len(await messages(world, event="dunning_attempt")) == 1
    assert await has_access(world)
    await send(world)
    [thanks] = await messages(world, event="payment_received")
    assert thanks.status in (NotificationStatus.SENT, NotificationStatus.DELIVERED)
    await assert_nothing_sent_in_quiet_hours(world)


async def test_paid_at_attempt_3_after_two_unanswered_reminders(world: World) -> None:
    due = (await subscription(world)).current_period_end
    for offset, expected in ((0, "attempt_1"), (1, "attempt_2"), (3, "attempt_3")):
        travel(world, due + days(offset))
        assert await job(world, "dunning") == {expected: 1}
        assert await job(world, "dunning") == {"waiting": 1}  # a second pass (or process) adds nothing
        await send(world)
    steps = await attempts(world)
    assert [(a.dunning_step, a.outcome) for a in steps] == [
        (1, RenewalOutcome.EXPIRED),
        (2, RenewalOutcome.EXPIRED),
        (3, RenewalOutcome.INVITED),
    ]
    await _approve_by_sms(world, replies_before=await _sms_count(world))
    steps = await attempts(world)
    assert steps[2].outcome is RenewalOutcome.SUCCEEDED
    assert (await subscription(world)).status is SubscriptionStatus.ACTIVE
    travel(world, due + days(7))
    assert await job(world, "dunning") == {}
    assert len(await messages(world, event="dunning_attempt")) == 3
    await assert_nothing_sent_in_quiet_hours(world)


async def test_never_paid_ends_unpaid_without_access(world: World) -> None:
    due = (await subscription(world)).current_period_end
    plan = [
        (0, "attempt_1", SubscriptionStatus.PAST_DUE),
        (1, "attempt_2", SubscriptionStatus.PAST_DUE),
        (3, "attempt_3", SubscriptionStatus.PAST_DUE),
        (7, "attempt_4", SubscriptionStatus.GRACE),
        (10, "waiting", SubscriptionStatus.GRACE),
        (12, "grace_warned", SubscriptionStatus.GRACE),
    ]
    for offset, action, status in plan:
        travel(world, due + days(offset))
        summary = await job(world, "dunning")
        assert summary == {action: 1}, (offset, summary)
        assert (await subscription(world)).status is status
        assert await has_access(world)
        await send(world)
    travel(world, due + days(14))
    assert await job(world, "dunning") == {"unpaid": 1}
    assert (await subscription(world)).status is SubscriptionStatus.UNPAID
    assert not await has_access(world)
    assert await job(world, "dunning") == {}  # unpaid is the end of the path
    [ended] = await messages(world, event="subscription_cancelled")
    assert "has ended" in ended.body
    assert len(await messages(world, event="dunning_attempt")) == 4
    assert len(await messages(world, event="grace_ending")) == 1
    await send(world)
    await assert_nothing_sent_in_quiet_hours(world)


async def test_never_paid_downgrades_to_the_free_tier_where_the_product_says_so(world: World) -> None:
    premium = sid("product", "premium")
    async with world.makers() as session, session.begin():
        product = await session.get(Product, premium)
        assert product is not None
        free = Product(
            id=new_id(),
            institution_id=product.institution_id,
            sku="free",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Somo Free",
            name_sw="Somo Bure",
        )
        session.add(free)
        await session.flush()
        session.add(
            Price(
                id=new_id(),
                institution_id=product.institution_id,
                product_id=free.id,
                amount_minor=0,
                interval=PriceInterval.MONTH,
            )
        )
        product.downgrade_to_id = free.id
    due = (await subscription(world)).current_period_end
    for offset in (0, 1, 3, 7, 12):
        travel(world, due + days(offset))
        await job(world, "dunning")
    travel(world, due + days(14))
    assert await job(world, "dunning") == {"downgraded": 1}
    sub = await subscription(world)
    assert sub.status is SubscriptionStatus.ACTIVE and sub.product_id == free.id
    [note] = await messages(world, event="subscription_downgraded")
    assert "Somo Free" in note.body
    # The free tier renews by itself, with no invitation and no reminder.
    travel(world, sub.current_period_end)
    assert await job(world, "renewals") == {"due": 0, "invited": 0, "queued": 0, "suppressed": 0}
    assert await job(world, "dunning") == {"renewed_free": 1}
    assert (await subscription(world)).status is SubscriptionStatus.ACTIVE


async def test_a_reminder_due_in_quiet_hours_waits_for_seven_in_the_morning(world: World) -> None:
    due = (await subscription(world)).current_period_end
    late = nairobi(due, 23, 30)
    travel(world, late)
    assert await job(world, "dunning") == {"attempt_1": 1}
    [reminder] = await messages(world, event="dunning_attempt")
    morning = nairobi(late + days(1), 7)
    assert reminder.scheduled_for == morning
    assert await send(world) == {}
    travel(world, morning - days(1 / 24 / 60))
    assert await send(world) == {}
    travel(world, morning)
    assert await send(world) in SENT_OR_DELIVERED
    await assert_nothing_sent_in_quiet_hours(world)


async def test_a_cancelled_subscription_ends_at_its_period_end_without_reminders(world: World) -> None:
    async with world.makers() as session, session.begin():
        await session.execute(
            sa.update(Subscription).where(Subscription.id == AMINA_SUB).values(cancel_at_period_end=True)
        )
    due = (await subscription(world)).current_period_end
    assert (await job(world, "renewals"))["invited"] == 0
    travel(world, due)
    summary = await job(world, "dunning")
    assert summary.get("cancelled") == 1
    assert (await subscription(world)).status is SubscriptionStatus.CANCELLED
    assert not await has_access(world)
    assert await messages(world, event="dunning_attempt") == []
