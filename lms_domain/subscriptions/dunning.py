"""Dunning: what happens to a subscription nobody paid for on its due date.

Learners are never charged without approving, so a dunning "attempt" is an invitation to
approve (an SMS; the approval fires the payment prompt). The path, with the default schedule
(attempts at T+0, +1, +3 and +7 days, then 7 days of grace)::

    active --due--> past_due --last attempt--> grace --grace ends--> unpaid (access removed)
                                                                 \\-> active on the free tier
                                                                     (product.downgrade_to)
    active --due, cancel_at_period_end--> cancelled

Access is derived from the state (``sync_access``): kept through past_due and grace, removed
when unpaid or cancelled. The entitlement row carries the date access ends, so an edge node
that hears nothing more still closes it on time.

Payment through any channel settles the renewal (``renewals.settle_renewal``), which returns
the subscription to active for a new period; the next pass finds nothing to do for it.

A configuration failure (our credentials, our shortcode) is not the learner's doing: the
dunning clock stops while it stands, the admins are paged, and the time lost is added back to
every later step, so the learner keeps all their attempts.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock, day_text
from lms_domain.commerce.models import Price, PriceInterval, Product
from lms_domain.db import insert_once, lock
from lms_domain.entitlements.service import grant_subscription, subscription_entitlement
from lms_domain.ids import new_id
from lms_domain.money import Money
from lms_domain.notifications.service import notify_learner
from lms_domain.payments.models import FailureClass
from lms_domain.payments.renewals import open_prompt, page_configuration_error
from lms_domain.payments.settlement import add_interval
from lms_domain.subscriptions.models import (
    DunningSchedule,
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)

log = logging.getLogger("somo.dunning")

DUNNED = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.GRACE)
GRACE_WARNING = timedelta(days=2)  # "your access ends on ..." this long before it does
HOLD_LIMIT = timedelta(days=7)  # the longest a configuration failure holds a learner's schedule


@dataclass(frozen=True, slots=True)
class Schedule:
    """When each dunning step falls, counted from the due date (plus any time held)."""

    offsets_days: tuple[int, ...] = (0, 1, 3, 7)
    grace_days: int = 7

    @property
    def steps(self) -> int:
        return len(self.offsets_days)

    def step_at(self, anchor: datetime, step: int) -> datetime:
        """Step 1..n's time; ``anchor`` is the due date moved by time held."""
        return anchor + timedelta(days=self.offsets_days[step - 1])

    def grace_starts(self, anchor: datetime) -> datetime:
        return self.step_at(anchor, self.steps)

    def access_until(self, anchor: datetime) -> datetime:
        return self.grace_starts(anchor) + timedelta(days=self.grace_days)

    def latest_step(self, anchor: datetime, now: datetime) -> int:
        """The last step whose time has come (0: none yet)."""
        return sum(1 for step in range(1, self.steps + 1) if self.step_at(anchor, step) <= now)


DEFAULT_SCHEDULE = Schedule()


async def schedule_for(session: AsyncSession, institution_id: uuid.UUID) -> Schedule:
    row = await session.scalar(sa.select(DunningSchedule).where(DunningSchedule.institution_id == institution_id))
    if row is None:
        return DEFAULT_SCHEDULE
    offsets = tuple(sorted({int(d) for d in row.offsets_days})) or DEFAULT_SCHEDULE.offsets_days
    return Schedule(offsets_days=offsets, grace_days=row.grace_days)


def time_held(attempts: Sequence[SubscriptionRenewalAttempt], due: datetime, now: datetime) -> timedelta:
    """How long configuration failures stopped the clock: from each such failure (or the due
    date, if it failed before) to the next try of the period (or to now, while it is the
    latest), at most ``HOLD_LIMIT`` in all. The cap is what ends a hold nobody lifts: the admins
    were paged every day of it, and the learner's schedule then resumes where it stopped."""
    ordered = sorted(attempts, key=lambda a: a.attempt_no)
    held = timedelta(0)
    for index, attempt in enumerate(ordered):
        if attempt.outcome is RenewalOutcome.FAILED and attempt.failure_class == FailureClass.CONFIGURATION.value:
            start = max(attempt.resolved_at or attempt.updated_at or now, due)
            end = ordered[index + 1].created_at if index + 1 < len(ordered) else now
            held += max(timedelta(0), (end or now) - start)
    return min(held, HOLD_LIMIT)


async def sync_access(session: AsyncSession, subscription: Subscription, now: datetime) -> None:
    """Make the subscription's entitlement say what its state allows: open until the period
    ends (active), until grace ends (past due, grace), or closed now (unpaid, cancelled)."""
    entitlement = await subscription_entitlement(session, subscription.id)
    if entitlement is None:
        return
    status = subscription.status
    if status in (SubscriptionStatus.UNPAID, SubscriptionStatus.CANCELLED):
        if entitlement.revoked_at is None:
            entitlement.revoked_at = now
        return
    until = subscription.grace_until if status in DUNNED else subscription.current_period_end
    if until is not None and until > entitlement.valid_from and entitlement.valid_until != until:
        entitlement.valid_until = until
    entitlement.revoked_at = None


async def _attempts(session: AsyncSession, subscription: Subscription) -> list[SubscriptionRenewalAttempt]:
    return list(
        await session.scalars(
            sa.select(SubscriptionRenewalAttempt)
            .where(
                SubscriptionRenewalAttempt.subscription_id == subscription.id,
                SubscriptionRenewalAttempt.period_start == subscription.current_period_end,
            )
            .order_by(SubscriptionRenewalAttempt.attempt_no)
        )
    )


async def _end_of_grace(
    session: AsyncSession, subscription: Subscription, price: Price, values: dict[str, object], now: datetime
) -> str:
    """Downgrade to the product's free tier where it has one, else unpaid: access removed."""
    product = await session.get(Product, subscription.product_id)
    free = None
    if product is not None and product.downgrade_to_id is not None:
        free = await session.scalar(
            sa.select(Price)
            .where(
                Price.product_id == product.downgrade_to_id,
                Price.amount_minor == 0,
                Price.is_active.is_(True),
                Price.interval != PriceInterval.ONE_TIME,
            )
            .order_by(Price.id)
            .limit(1)
        )
    due = subscription.current_period_end
    subscription.status = SubscriptionStatus.UNPAID  # the paid entitlement closes either way
    await sync_access(session, subscription, now)
    if free is None:
        await notify_learner(
            session=session,
            learner_id=subscription.learner_id,
            event="subscription_cancelled",
            values=values,
            dedupe_key=f"subscription_cancelled:{subscription.id}:{due.isoformat()}",
            now=now,
        )
        return "unpaid"
    # The free tier's opens, as a subscription to the free product.
    target = await session.get(Product, free.product_id)
    end = add_interval(now, free.interval)
    assert target is not None and end is not None  # foreign key; recurring by the query
    subscription.product_id, subscription.price_id = target.id, free.id
    subscription.status, subscription.grace_until = SubscriptionStatus.ACTIVE, None
    subscription.current_period_start, subscription.current_period_end = now, end
    grant_subscription(
        session,
        institution_id=subscription.institution_id,
        learner_id=subscription.learner_id,
        product_id=target.id,
        subscription_id=subscription.id,
        valid_from=now,
        valid_until=end,
    )
    await notify_learner(
        session=session,
        learner_id=subscription.learner_id,
        event="subscription_downgraded",
        values={**values, "plan_name": target.name_en},
        dedupe_key=f"subscription_downgraded:{subscription.id}:{due.isoformat()}",
        now=now,
    )
    return "downgraded"


async def advance(session: AsyncSession, subscription_id: uuid.UUID, *, schedule: Schedule, now: datetime) -> str:
    """Move one subscription along its dunning path as far as ``now`` allows; what was done.

    Locks the subscription (as an approval does), and every step is unique in the database, so
    two scheduler processes, or a pass and a learner's approval, never double an attempt."""
    subscription = await lock(session, Subscription, subscription_id)
    if subscription is None or subscription.deleted_at is not None:
        return "gone"
    # The subscription and its entitlement are synced rows: their flush takes the school's change
    # counter until commit, so it waits for the commit, after every read and queued message.
    with session.no_autoflush:
        return await _advance(session, subscription, schedule=schedule, now=now)


async def _advance(session: AsyncSession, subscription: Subscription, *, schedule: Schedule, now: datetime) -> str:
    price = await session.get(Price, subscription.price_id)
    assert price is not None  # foreign key
    due = subscription.current_period_end
    if subscription.status is SubscriptionStatus.ACTIVE:
        if now < due:
            return "not_due"
        if subscription.cancel_at_period_end:
            subscription.status, subscription.cancelled_at = SubscriptionStatus.CANCELLED, now
            await sync_access(session, subscription, now)
            await notify_learner(
                session=session,
                learner_id=subscription.learner_id,
                event="subscription_cancelled",
                values={},
                dedupe_key=f"subscription_cancelled:{subscription.id}:{due.isoformat()}",
                now=now,
            )
            return "cancelled"
        if price.amount_minor == 0:
            end = add_interval(due, price.interval)
            if end is None:
                return "one_time"
            subscription.current_period_start, subscription.current_period_end = due, end
            await sync_access(session, subscription, now)
            return "renewed_free"
        subscription.status = SubscriptionStatus.PAST_DUE
    elif subscription.status not in DUNNED:
        return "not_dunned"

    attempts = await _attempts(session, subscription)
    latest = attempts[-1] if attempts else None
    for attempt in attempts:  # the invitation before the due date went unanswered
        if attempt.dunning_step == 0 and attempt.outcome in (RenewalOutcome.SCHEDULED, RenewalOutcome.INVITED):
            attempt.outcome, attempt.resolved_at, attempt.updated_at = RenewalOutcome.EXPIRED, now, now
    held = time_held(attempts, due, now)
    anchor = due + held
    grace_until = schedule.access_until(anchor)
    if subscription.grace_until != grace_until:
        subscription.grace_until = grace_until
    await sync_access(session, subscription, now)
    amount = Money(price.amount_minor, price.currency).figure
    # {ussd_code} and {shortcode} are the deployment's: the sender fills them (``Senders.finish``).
    values: dict[str, object] = {"amount": amount, "due_date": day_text(due), "access_until": day_text(grace_until)}
    if now >= grace_until:  # before anything else: a prompt left open must not keep access forever
        return await _end_of_grace(session, subscription, price, values, now)
    if (
        latest is not None
        and latest.outcome is RenewalOutcome.FAILED
        and latest.failure_class == FailureClass.CONFIGURATION.value
        and held < HOLD_LIMIT
    ):
        await page_configuration_error(
            session, subscription.institution_id, latest.detail or "see the payment log", now
        )
        return "held"
    if latest is not None and latest.outcome is RenewalOutcome.APPROVED and await open_prompt(session, latest):
        return "awaiting_payment"
    step = schedule.latest_step(anchor, now)
    done = {a.dunning_step for a in attempts if a.dunning_step is not None}
    action = "waiting"
    if step > 0 and step not in done:
        inserted = await insert_once(
            session,
            SubscriptionRenewalAttempt,
            {
                "id": new_id(),
                "institution_id": subscription.institution_id,
                "subscription_id": subscription.id,
                "period_start": due,
                "attempt_no": (latest.attempt_no + 1) if latest else 0,
                "dunning_step": step,
                "outcome": RenewalOutcome.INVITED,
                "scheduled_for": schedule.step_at(anchor, step),
                "invited_at": now,
                "created_at": now,
                "updated_at": now,
            },
            unique=["subscription_id", "period_start", "dunning_step"],
        )
        if inserted is not None:
            for attempt in attempts:
                if attempt.outcome is RenewalOutcome.INVITED:
                    attempt.outcome, attempt.resolved_at, attempt.updated_at = RenewalOutcome.EXPIRED, now, now
            await notify_learner(
                session=session,
                learner_id=subscription.learner_id,
                event="dunning_attempt",
                values={**values, "attempt": step, "attempts_total": schedule.steps},
                dedupe_key=f"dunning:{subscription.id}:{due.isoformat()}:{step}",
                now=now,
            )
            action = f"attempt_{step}"
    if step >= schedule.steps:
        subscription.status = SubscriptionStatus.GRACE
        if now >= grace_until - GRACE_WARNING:
            queued = await notify_learner(
                session=session,
                learner_id=subscription.learner_id,
                event="grace_ending",
                values=values,
                dedupe_key=f"grace_ending:{subscription.id}:{due.isoformat()}",
                now=now,
            )
            action = "grace_warned" if queued and action == "waiting" else action
    return action


def dunning_candidates(now: datetime) -> sa.Select[uuid.UUID, uuid.UUID]:
    """Subscriptions the dunning pass looks at (id, school): active past their due date, past
    due, in grace."""
    return sa.select(Subscription.id, Subscription.institution_id).where(
        Subscription.deleted_at.is_(None),
        sa.or_(
            sa.and_(Subscription.status == SubscriptionStatus.ACTIVE, Subscription.current_period_end <= now),
            Subscription.status.in_(DUNNED),
        ),
    )


async def run_dunning(
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    batch: int = 500,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """One dunning pass over every candidate, a transaction each (a lock held per learner, not
    per pass); counts by what was done."""
    now = clock.now()
    outcomes: Counter[str] = Counter()
    schedules: dict[uuid.UUID, Schedule] = {}
    after: uuid.UUID | None = None
    while True:
        async with sessions() as session:
            stmt = dunning_candidates(now).order_by(Subscription.id).limit(batch)
            if after is not None:
                stmt = stmt.where(Subscription.id > after)
            rows = (await session.execute(stmt)).all()
            for _, institution_id in rows:
                if institution_id not in schedules:
                    schedules[institution_id] = await schedule_for(session, institution_id)
        if not rows:
            break
        after = rows[-1][0]
        for subscription_id, institution_id in rows:
            try:
                async with sessions() as session, session.begin():
                    action = await advance(session, subscription_id, schedule=schedules[institution_id], now=now)
            except Exception:
                log.exception("dunning failed for one subscription", extra={"subscription_id": str(subscription_id)})
                action = "error"
            outcomes[action] += 1
        if progress is not None:
            progress(len(rows))
    return dict(outcomes)
