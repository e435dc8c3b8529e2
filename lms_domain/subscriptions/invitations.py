"""The renewal job: invite every learner whose subscription comes due soon to approve it.

An invitation is a ``SubscriptionRenewalAttempt`` (step 0 of its period) plus a "renewal due"
message in the learner's language; approving it (USSD, REST, or RENEW by SMS) fires the
payment prompt through ``renewals.approve_renewal``. Nothing is charged here.

It runs over every subscription of the platform, so it works in batches of set-based
statements, not an ORM object per row: memory stays flat in the number of subscriptions and
a pass over 100,000 takes seconds (``bench/renewal_job.py``). Each batch is one transaction;
the step-0 attempt is unique per (subscription, period), so a batch that runs twice (a retry,
a second scheduler process) inserts nothing and queues nothing the second time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock, day_text
from lms_domain.commerce.models import Price
from lms_domain.db import dialect_insert
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.money import Money
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationStatus,
)
from lms_domain.notifications.preferences import allows, settings_of
from lms_domain.notifications.quiet_hours import QuietHours
from lms_domain.notifications.service import Rendered, log_row, quiet_hours_for, render, template_text
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Learner, Phone, User

log = logging.getLogger("somo.renewals")

EVENT = "renewal_due"
DEFAULT_NOTICE = timedelta(days=3)


@dataclass(slots=True)
class InvitationRun:
    """What a pass did: subscriptions looked at, invitations made, messages queued."""

    due: int = 0
    invited: int = 0
    queued: int = 0
    suppressed: int = 0
    batches: int = 0
    failed: int = 0  # subscriptions in batches that failed (logged; the pass goes on)


@dataclass(slots=True)
class _Texts:
    """Templates and quiet hours, looked up once per (school, channel, language) in a pass."""

    texts: dict[tuple[uuid.UUID, NotificationChannel, Language], Rendered] = field(default_factory=dict)
    quiet: dict[uuid.UUID, QuietHours] = field(default_factory=dict)
    days: dict[datetime, str] = field(default_factory=dict)  # per batch: due dates are many
    amounts: dict[tuple[int, str], str] = field(default_factory=dict)

    async def text(
        self, session: AsyncSession, institution_id: uuid.UUID, channel: NotificationChannel, language: Language
    ) -> Rendered:
        key = (institution_id, channel, language)
        if key not in self.texts:
            # Unfilled: each learner's values go in once, below (``{{`` stays an escaped brace).
            self.texts[key] = await template_text(
                session, institution_id=institution_id, event=EVENT, channel=channel, language=language
            )
        return self.texts[key]

    async def quiet_hours(self, session: AsyncSession, institution_id: uuid.UUID) -> QuietHours:
        if institution_id not in self.quiet:
            self.quiet[institution_id] = await quiet_hours_for(session, institution_id)
        return self.quiet[institution_id]

    def day(self, at: datetime) -> str:
        if at not in self.days:
            self.days[at] = day_text(at)
        return self.days[at]

    def amount(self, minor: int, currency: str) -> str:
        if (minor, currency) not in self.amounts:
            self.amounts[minor, currency] = Money(minor, currency).figure
        return self.amounts[minor, currency]


async def _invite_batch(
    session: AsyncSession,
    rows: list[Any],
    *,
    texts: _Texts,
    now: datetime,
    run: InvitationRun,
) -> None:
    attempts = [
        {
            "id": new_id(),
            "institution_id": row.institution_id,
            "subscription_id": row.id,
            "period_start": row.current_period_end,
            "attempt_no": 0,
            "dunning_step": 0,
            "outcome": RenewalOutcome.INVITED,
            "scheduled_for": row.current_period_end,
            "invited_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for row in rows
    ]
    # A learner who approved before the invitation holds attempt 0 already: no invitation then.
    table = SubscriptionRenewalAttempt.__table__
    conn = await session.connection()
    inserted = set(
        (
            await conn.execute(
                dialect_insert(session, table).on_conflict_do_nothing().returning(table.c.subscription_id),
                attempts,
            )
        ).scalars()
    )
    run.invited += len(inserted)
    invited = [row for row in rows if row.id in inserted]
    if not invited:
        return
    settings = await settings_of(session, [row.learner_id for row in invited], EVENT)
    messages: list[dict[str, object]] = []
    for row in invited:
        send_at = (await texts.quiet_hours(session, row.institution_id)).next_allowed(now)
        # {ussd_code} and {shortcode} are the deployment's: the sender fills them.
        values = {
            "learner_name": row.display_name,
            "amount": texts.amount(row.amount_minor, row.currency),
            "due_date": texts.day(row.current_period_end),
        }
        key = f"{EVENT}:{row.id}:{row.current_period_end.isoformat()}"
        for channel, recipient in ((NotificationChannel.SMS, row.e164), (NotificationChannel.EMAIL, row.email)):
            allowed = allows(channel, settings.get((row.learner_id, channel), {}), EVENT)
            if not recipient or (channel is NotificationChannel.EMAIL and not allowed):
                continue
            text = await texts.text(session, row.institution_id, channel, row.language)
            email = channel is NotificationChannel.EMAIL
            messages.append(
                log_row(
                    channel=channel,
                    recipient=recipient,
                    subject=render(text.subject, values) if email and text.subject else None,
                    body=render(text.body, values),
                    event=EVENT,
                    language=text.language,
                    dedupe_key=f"{key}:email" if email else key,
                    now=now,
                    scheduled_for=send_at if allowed else None,
                    learner_id=row.learner_id,
                    institution_id=row.institution_id,
                    template_id=text.template_id,
                    status=NotificationStatus.QUEUED if allowed else NotificationStatus.SUPPRESSED,
                )
            )
            run.suppressed += 0 if allowed else 1
    if messages:
        # Core, not the ORM's bulk path, which costs as much again in Python.
        await conn.execute(dialect_insert(session, NotificationLog.__table__).on_conflict_do_nothing(), messages)
        run.queued += sum(1 for m in messages if m["status"] is NotificationStatus.QUEUED)


def coming_due(now: datetime, notice: timedelta) -> Any:
    """Active, paid subscriptions whose period ends within ``notice``, with what the message needs."""
    return (
        sa.select(
            Subscription.id,
            Subscription.institution_id,
            Subscription.learner_id,
            Subscription.current_period_end,
            Price.amount_minor,
            Price.currency,
            Learner.display_name,
            Learner.language,
            Phone.e164,
            User.email,
        )
        .join(Price, Price.id == Subscription.price_id)
        .join(Learner, Learner.id == Subscription.learner_id)
        .outerjoin(Phone, Phone.id == Learner.phone_id)
        .outerjoin(User, User.id == Learner.user_id)
        .where(
            Subscription.status == SubscriptionStatus.ACTIVE,
            Subscription.deleted_at.is_(None),
            Subscription.cancel_at_period_end.is_(False),
            Subscription.current_period_end > now,
            Subscription.current_period_end <= now + notice,
            Price.amount_minor > 0,
            ~sa.exists().where(
                SubscriptionRenewalAttempt.subscription_id == Subscription.id,
                SubscriptionRenewalAttempt.period_start == Subscription.current_period_end,
            ),
        )
    )


async def invite_renewals(
    *,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    notice: timedelta = DEFAULT_NOTICE,
    batch: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> InvitationRun:
    """Invite every learner whose subscription is due within ``notice`` and not invited yet
    for that period. Keyset-paged on (due date, id), a transaction per batch."""
    now = clock.now()
    run, texts = InvitationRun(), _Texts()
    # Paged on (due date, id), the order of the (status, period end) index: each batch reads just
    # the due rows after the last one, whatever the table's statistics say.
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        rows: list[Any] = []
        counted = (run.invited, run.queued, run.suppressed)
        try:
            async with sessions() as session, session.begin():
                stmt = coming_due(now, notice).order_by(Subscription.current_period_end, Subscription.id).limit(batch)
                if after is not None:
                    stmt = stmt.where(sa.tuple_(Subscription.current_period_end, Subscription.id) > after)
                rows = list((await session.execute(stmt)).all())
                if not rows:
                    break
                after = (rows[-1].current_period_end, rows[-1].id)
                texts.days.clear()
                await _invite_batch(session, rows, texts=texts, now=now, run=run)
        except Exception:
            if not rows:
                raise  # the database itself: nothing to skip past
            # One bad row (a template, a learner) must not stop every school's invitations: this
            # batch is rolled back and retried on the next hourly run; the pass goes on.
            log.exception("renewal invitations failed for a batch", extra={"subscriptions": len(rows)})
            run.invited, run.queued, run.suppressed = counted
            run.failed += len(rows)
        run.due += len(rows)
        run.batches += 1
        if progress is not None:
            progress(len(rows))
    return run
