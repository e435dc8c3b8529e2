"""The renewal job in batches: every due subscription invited once across batch boundaries (ties
on the due date included), nothing for the free, the cancelled-at-period-end or the not yet due,
and a second pass adds nothing."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import FixedClock
from lms_domain.notifications.models import NotificationLog, NotificationStatus
from lms_domain.notifications.preferences import set_sms_opt_out
from lms_domain.notifications.service import fill_contacts
from lms_domain.subscriptions.invitations import invite_renewals
from lms_domain.subscriptions.models import RenewalOutcome, SubscriptionRenewalAttempt
from tests.factories import make_institution, make_learner, make_subscription

CONTACTS = {"ussd_code": "*384*123#", "shortcode": "20880"}


async def test_batches_invite_each_due_subscription_once(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock
) -> None:
    school = await make_institution(session)
    now = clock.now()
    due = []
    for n in range(7):  # three share a due date: the page boundary falls inside the tie
        learner = await make_learner(session, institution=school, name=f"Due {n}", phone=f"+2547120000{n:02d}")
        due.append(
            await make_subscription(session, learner=learner, due=now + timedelta(days=1 if n < 3 else 2, hours=n))
        )
    quiet = await make_learner(session, institution=school, name="Opted Out", phone="+254712000099")
    due.append(await make_subscription(session, learner=quiet, due=now + timedelta(days=2)))
    await set_sms_opt_out(session=session, learner_ids=[quiet.id], opted_out=True, now=now)
    later = await make_learner(session, institution=school, name="Later", phone="+254712000098")
    await make_subscription(session, learner=later, due=now + timedelta(days=10))
    free = await make_learner(session, institution=school, name="Free", phone="+254712000097")
    await make_subscription(session, learner=free, due=now + timedelta(days=1), amount_minor=0)
    leaving = await make_learner(session, institution=school, name="Leaving", phone="+254712000096")
    (await make_subscription(session, learner=leaving, due=now + timedelta(days=1))).cancel_at_period_end = True
    await session.commit()

    pages: list[int] = []
    run = await invite_renewals(sessions=sessionmaker, clock=clock, batch=2, progress=pages.append)
    assert (run.due, run.invited, run.queued, run.suppressed) == (8, 8, 7, 1)
    assert pages == [2, 2, 2, 2]
    async with sessionmaker() as fresh:
        attempts = list(await fresh.scalars(sa.select(SubscriptionRenewalAttempt)))
        messages = list(await fresh.scalars(sa.select(NotificationLog)))
    assert sorted(a.subscription_id for a in attempts) == sorted(s.id for s in due)
    assert {(a.attempt_no, a.dunning_step, a.outcome) for a in attempts} == {(0, 0, RenewalOutcome.INVITED)}
    by_status = sorted(m.status for m in messages)
    assert by_status.count(NotificationStatus.QUEUED) == 7 and by_status.count(NotificationStatus.SUPPRESSED) == 1
    # The contact points are the deployment's: the sender fills them.
    assert all(
        "KES 300" in m.body and "*384*123#" in (sent := fill_contacts(m.body, CONTACTS)) and "20880" in sent
        for m in messages
    )

    again = await invite_renewals(sessions=sessionmaker, clock=clock, batch=2)
    assert (again.due, again.invited, again.queued) == (0, 0, 0)


async def test_a_school_template_with_escaped_braces_is_filled_once(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock
) -> None:
    from lms_domain.access import Actor
    from lms_domain.i18n import Language
    from lms_domain.notifications.schemas import TemplateIn
    from lms_domain.notifications.templates import save_template
    from lms_domain.tenancy.models import Role

    school = await make_institution(session)
    learner = await make_learner(session, institution=school, name="Wanjiru", phone="+254712000010")
    await make_subscription(session, learner=learner, due=clock.now() + timedelta(days=1))
    admin = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=school.id)
    body = "{learner_name}: lipa KES {amount} :-{{ ama piga {ussd_code}"
    await save_template(
        session=session,
        actor=admin,
        data=TemplateIn(event="renewal_due", language=Language.EN, body=body),
        now=clock.now(),
    )
    await session.commit()
    run = await invite_renewals(sessions=sessionmaker, clock=clock)
    assert (run.invited, run.queued, run.failed) == (1, 1, 0)
    async with sessionmaker() as fresh:
        [message] = list(await fresh.scalars(sa.select(NotificationLog)))
    assert fill_contacts(message.body, CONTACTS) == "Wanjiru: lipa KES 300 :-{ ama piga *384*123#"
