"""Each event reaches the learner in their language, once: enrollment, certificate, quiz result
(email only), and the weekly digest for a phone shared by several profiles."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.assessments.certificates import issue_certificate
from lms_domain.assessments.service import start_attempt, submit_attempt
from lms_domain.clock import FixedClock
from lms_domain.courses.service import enroll, record_progress
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.notifications.digest import send_progress_digests
from lms_domain.notifications.models import NotificationChannel, NotificationLog, NotificationStatus
from lms_domain.notifications.preferences import set_preference
from lms_domain.tenancy.models import Role, User
from tests.factories import make_course, make_institution, make_learner


async def _log(session: AsyncSession, event: str) -> list[NotificationLog]:
    return list(
        await session.scalars(
            sa.select(NotificationLog).where(NotificationLog.event == event).order_by(NotificationLog.created_at)
        )
    )


async def test_enrollment_certificate_and_quiz_result_are_notified(session: AsyncSession, clock: FixedClock) -> None:
    school = await make_institution(session)
    learner = await make_learner(
        session, institution=school, name="Akinyi Odhiambo", phone="+254711222333", language=Language.SW
    )
    fx = await make_course(session, institution=school, lessons=1, questions=2, title="Form 3 Physics")
    await enroll(session=session, learner_id=learner.id, course_id=fx.course.id, clock=clock)
    [enrolled] = await _log(session, "enrollment_confirmed")
    assert enrolled.channel is NotificationChannel.SMS and enrolled.recipient == "+254711222333"
    assert enrolled.body.startswith("Habari Akinyi Odhiambo, umesajiliwa katika ")  # Kiswahili, her language

    await record_progress(session=session, learner_id=learner.id, lesson_id=fx.lessons[0].id, percent=100, clock=clock)
    attempt = await start_attempt(session=session, learner_id=learner.id, quiz_id=fx.quiz.id, clock=clock)
    await submit_attempt(session=session, learner_id=learner.id, attempt_id=attempt.id, clock=clock, answers=fx.correct)
    await issue_certificate(session=session, learner_id=learner.id, course_id=fx.course.id, clock=clock)
    [certified] = await _log(session, "certificate_issued")
    assert "Hongera Akinyi Odhiambo!" in certified.body and "Nambari ya cheti" in certified.body
    # The score was on her screen: no SMS repeats it, and she has not asked for email.
    assert await _log(session, "quiz_result") == []

    user = User(
        id=new_id(),
        institution_id=school.id,
        username=f"akinyi-{new_id().hex[:6]}",
        email="akinyi@example.com",
        role=Role.LEARNER,
        password_hash="x",
    )
    session.add(user)
    await session.flush()
    learner.user_id = user.id
    await set_preference(
        session=session,
        learner_id=learner.id,
        channel=NotificationChannel.EMAIL,
        event="*",
        enabled=True,
        now=clock.now(),
    )
    clock.advance(timedelta(minutes=5))
    again = await start_attempt(session=session, learner_id=learner.id, quiz_id=fx.quiz.id, clock=clock)
    await submit_attempt(session=session, learner_id=learner.id, attempt_id=again.id, clock=clock, answers=fx.correct)
    [result] = await _log(session, "quiz_result")
    assert result.channel is NotificationChannel.EMAIL and result.recipient == "akinyi@example.com"
    assert result.subject == "Matokeo ya jaribio" and "2/2" in result.body


async def test_the_weekly_digest_is_one_message_per_phone(
    session: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], clock: FixedClock
) -> None:
    school = await make_institution(session)
    shared = "+254711999000"
    baraka = await make_learner(session, institution=school, name="Baraka Otieno", phone=shared)
    zawadi = await make_learner(session, institution=school, name="Zawadi Otieno", phone=shared, language=Language.SW)
    await make_learner(session, institution=school, name="Juma Mwangi", phone="+254711999001")
    other_school = await make_institution(session, name="Other School")
    cousin = await make_learner(session, institution=other_school, name="Kamau Otieno", phone=shared)
    fx = await make_course(session, institution=school, lessons=2, questions=2, title="Form 2 Maths")
    await enroll(session=session, learner_id=baraka.id, course_id=fx.course.id, clock=clock)
    await record_progress(session=session, learner_id=baraka.id, lesson_id=fx.lessons[0].id, percent=100, clock=clock)
    await session.commit()

    first = await send_progress_digests(sessions=sessionmaker, clock=clock)
    assert first == {"phones": 3, "queued": 3}  # the shared phone once per school
    async with sessionmaker() as fresh:
        digests = await _log(fresh, "progress_digest")
    family = next(d for d in digests if d.recipient == shared and d.institution_id == school.id)
    other = next(d for d in digests if d.recipient == shared and d.institution_id == other_school.id)
    # Each school's message names only its own learners.
    assert other.learner_id == cousin.id and "Kamau: no course yet" in other.body and "Baraka" not in other.body
    assert "Kamau" not in family.body
    # In the first profile's language, naming both children, sent under the first profile.
    assert family.learner_id == baraka.id and family.language is Language.EN
    assert family.body.startswith("Somo week ") and "Baraka & Zawadi:" in family.body
    assert "Baraka: Form 2 Maths 50%" in family.body and "Zawadi: no course yet" in family.body
    assert zawadi.id not in {d.learner_id for d in digests}
    assert all(d.status is NotificationStatus.QUEUED for d in digests)

    assert await send_progress_digests(sessions=sessionmaker, clock=clock) == {"phones": 3, "queued": 0}
    clock.advance(timedelta(days=7))
    assert (await send_progress_digests(sessions=sessionmaker, clock=clock))["queued"] == 3
