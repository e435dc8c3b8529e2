"""Learning on behalf of an ``Actor``: who may act for which learner, and tenant-scoped reads.

The flows themselves (enroll, record progress, attempts, certificates) live in
``lms_domain.courses`` and ``lms_domain.assessments`` and know only learner ids, because
USSD and sync call them too. This module adds the login's view: a learner acts for their
own profile, institution staff for any learner of their institution, platform admins only
read. Rows of another institution, or of another learner for a learner login, answer
NotFound so their existence never leaks.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_learners_row, ensure_visible, learner_scope
from lms_domain.assessments import certificates as certificate_flows
from lms_domain.assessments import service as attempt_flows
from lms_domain.assessments.models import Answer, Attempt, AttemptStatus, Certificate, Quiz
from lms_domain.assessments.ports import CertificateView
from lms_domain.clock import Clock
from lms_domain.courses import progress as progress_queries
from lms_domain.courses import service as course_flows
from lms_domain.courses.models import Enrollment, LessonProgress
from lms_domain.errors import NotFound, PermissionDenied
from lms_domain.ids import natural_id
from lms_domain.learning.schemas import (
    EARLIEST_OBSERVATION,
    AnswerOut,
    AttemptListQuery,
    AttemptOut,
    AttemptResultOut,
    AttemptStart,
    CertificateListQuery,
    CertificateOut,
    CourseProgressOut,
    EnrollmentListQuery,
    LessonProgressItem,
    ProgressUpdate,
    QuizInfo,
    attempt_result_out,
    question_out,
)
from lms_domain.pagination import paginate
from lms_domain.tenancy.models import Learner, Role

# Platform admins read across institutions but never act as a learner.
ACTING_ROLES = (Role.INSTITUTION_ADMIN, Role.INSTRUCTOR, Role.LEARNER)

S = TypeVar("S", bound=sa.Select[Any])


# --- who acts for whom --------------------------------------------------------------------


async def acting_learner(*, session: AsyncSession, actor: Actor, learner_id: uuid.UUID | None, write: bool) -> Learner:
    """The learner a request is about: a learner login's own profile, or the ``learner_id``
    staff name, which must be of their institution."""
    if write:
        actor.require(*ACTING_ROLES)
    if actor.role is Role.LEARNER:
        own = actor.own_learner_id()
        if learner_id is not None and learner_id != own:
            raise NotFound("learner not found")
        learner_id = own
    elif learner_id is None:
        # Staff logins have no learner profile of their own to act for.
        raise PermissionDenied("staff act for a learner: pass learner_id", code="learner_id_required")
    learner = await session.get(Learner, learner_id)
    ensure_visible(learner, actor, what="learner")
    assert learner is not None
    return learner


# --- enrollments --------------------------------------------------------------------------


async def enroll(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, learner_id: uuid.UUID | None, clock: Clock
) -> Enrollment:
    learner = await acting_learner(session=session, actor=actor, learner_id=learner_id, write=True)
    return await course_flows.enroll(session=session, learner_id=learner.id, course_id=course_id, clock=clock)


async def list_enrollments(
    *, session: AsyncSession, actor: Actor, query: EnrollmentListQuery
) -> tuple[Sequence[Enrollment], str | None]:
    stmt = learner_scope(
        sa.select(Enrollment).where(Enrollment.deleted_at.is_(None)),
        learner_column=Enrollment.learner_id,
        institution_column=Enrollment.institution_id,
        actor=actor,
    )
    if query.learner_id is not None:
        stmt = stmt.where(Enrollment.learner_id == query.learner_id)
    if query.course_id is not None:
        stmt = stmt.where(Enrollment.course_id == query.course_id)
    if query.status is not None:
        stmt = stmt.where(Enrollment.status == query.status)
    return await paginate(session, stmt, Enrollment.id, cursor=query.cursor, limit=query.limit)


async def get_enrollment(*, session: AsyncSession, actor: Actor, enrollment_id: uuid.UUID) -> Enrollment:
    enrollment = await session.get(Enrollment, enrollment_id)
    ensure_learners_row(enrollment, actor, what="enrollment")
    assert enrollment is not None
    return enrollment


async def withdraw(*, session: AsyncSession, actor: Actor, enrollment_id: uuid.UUID) -> Enrollment:
    enrollment = await get_enrollment(session=session, actor=actor, enrollment_id=enrollment_id)
    actor.require(*ACTING_ROLES)
    return await course_flows.withdraw(
        session=session, learner_id=enrollment.learner_id, course_id=enrollment.course_id
    )


# --- lesson progress ----------------------------------------------------------------------


async def record_progress(
    *, session: AsyncSession, actor: Actor, lesson_id: uuid.UUID, data: ProgressUpdate, clock: Clock
) -> LessonProgress:
    learner = await acting_learner(session=session, actor=actor, learner_id=data.learner_id, write=True)
    observed_at = data.observed_at
    if observed_at is not None and not EARLIEST_OBSERVATION <= observed_at <= clock.now():
        # Cheap phones lose their clock; the progress is worth keeping, the time is not.
        # A future time would otherwise pin last_seen_at ahead for good (it only rises).
        observed_at = None
    return await course_flows.record_progress(
        session=session,
        learner_id=learner.id,
        lesson_id=lesson_id,
        percent=data.percent,
        clock=clock,
        observed_at=observed_at,
    )


async def course_progress(
    *, session: AsyncSession, actor: Actor, course_id: uuid.UUID, learner_id: uuid.UUID | None
) -> CourseProgressOut:
    """Where a learner stands in a course: per-lesson progress, enrollment and certificate."""
    learner = await acting_learner(session=session, actor=actor, learner_id=learner_id, write=False)
    # An enrolled learner keeps their progress report after the course is unpublished.
    course = await course_flows.get_course_for(session=session, learner=learner, course_id=course_id, or_enrolled=True)
    enrollment = await session.get(Enrollment, natural_id("enrollment", learner.id, course.id))
    if enrollment is not None and enrollment.deleted_at is not None:
        enrollment = None
    statuses = await progress_queries.lesson_statuses(session=session, learner_id=learner.id, course_id=course.id)
    summary = progress_queries.summarise(course.id, statuses)
    certificate = await _course_certificate(session, learner.id, course.id)
    return CourseProgressOut(
        course_id=course.id,
        learner_id=learner.id,
        enrollment_id=enrollment.id if enrollment else None,
        enrollment_status=enrollment.status if enrollment else None,
        percent=summary.percent,
        lessons_total=summary.lessons_total,
        lessons_completed=summary.lessons_completed,
        lessons=[
            LessonProgressItem(
                lesson_id=s.lesson.id,
                section_id=s.lesson.section_id,
                position=s.lesson.position,
                title_en=s.lesson.title_en,
                title_sw=s.lesson.title_sw,
                percent=s.progress.percent if s.progress else 0,
                last_seen_at=s.progress.last_seen_at if s.progress else None,
                completed_at=s.progress.completed_at if s.progress else None,
            )
            for s in statuses
        ],
        certificate_id=certificate.id if certificate else None,
        certificate_code=certificate_flows.format_code(certificate.code) if certificate else None,
    )


# --- attempts -----------------------------------------------------------------------------


async def start_attempt(
    *,
    session: AsyncSession,
    actor: Actor,
    quiz_id: uuid.UUID,
    data: AttemptStart,
    clock: Clock,
    verify_base_url: str,
) -> AttemptOut:
    """Start an attempt, or resume the open one; the questions come without their answers."""
    learner = await acting_learner(session=session, actor=actor, learner_id=data.learner_id, write=True)
    attempt = await attempt_flows.start_attempt(
        session=session, learner_id=learner.id, quiz_id=quiz_id, clock=clock, channel=data.channel
    )
    return await attempt_view(session=session, attempt=attempt, verify_base_url=verify_base_url)


async def _visible_attempt(session: AsyncSession, actor: Actor, attempt_id: uuid.UUID) -> Attempt:
    attempt = await session.get(Attempt, attempt_id)
    ensure_learners_row(attempt, actor, what="attempt")
    assert attempt is not None
    return attempt


async def answer_question(
    *,
    session: AsyncSession,
    actor: Actor,
    attempt_id: uuid.UUID,
    question_id: uuid.UUID,
    choice_id: uuid.UUID,
    clock: Clock,
) -> AnswerOut:
    attempt = await _visible_attempt(session, actor, attempt_id)
    actor.require(*ACTING_ROLES)
    answer = await attempt_flows.answer_question(
        session=session,
        learner_id=attempt.learner_id,
        attempt_id=attempt.id,
        question_id=question_id,
        choice_id=choice_id,
        clock=clock,
    )
    return AnswerOut.model_validate(answer)


async def submit_attempt(
    *,
    session: AsyncSession,
    actor: Actor,
    attempt_id: uuid.UUID,
    answers: dict[uuid.UUID, uuid.UUID] | None,
    clock: Clock,
    verify_base_url: str,
) -> AttemptResultOut:
    attempt = await _visible_attempt(session, actor, attempt_id)
    actor.require(*ACTING_ROLES)
    result = await attempt_flows.submit_attempt(
        session=session, learner_id=attempt.learner_id, attempt_id=attempt.id, clock=clock, answers=answers
    )
    view = await attempt_view(session=session, attempt=result.attempt, verify_base_url=verify_base_url)
    assert view.result is not None
    return view.result


async def get_attempt(
    *, session: AsyncSession, actor: Actor, attempt_id: uuid.UUID, verify_base_url: str
) -> AttemptOut:
    attempt = await _visible_attempt(session, actor, attempt_id)
    return await attempt_view(session=session, attempt=attempt, verify_base_url=verify_base_url)


async def list_attempts(
    *, session: AsyncSession, actor: Actor, query: AttemptListQuery
) -> tuple[Sequence[Attempt], str | None]:
    stmt = learner_scope(
        sa.select(Attempt).where(Attempt.deleted_at.is_(None)),
        learner_column=Attempt.learner_id,
        institution_column=Attempt.institution_id,
        actor=actor,
    )
    if query.quiz_id is not None:
        stmt = stmt.where(Attempt.quiz_id == query.quiz_id)
    if query.learner_id is not None:
        stmt = stmt.where(Attempt.learner_id == query.learner_id)
    if query.status is not None:
        stmt = stmt.where(Attempt.status == query.status)
    return await paginate(session, stmt, Attempt.id, cursor=query.cursor, limit=query.limit)


async def attempt_view(*, session: AsyncSession, attempt: Attempt, verify_base_url: str) -> AttemptOut:
    """The attempt with its questions and answers; the grade only once it is submitted, and
    the correct choices only once the learner passed the quiz or has no attempt left."""
    quiz = await session.get(Quiz, attempt.quiz_id)
    if quiz is None:
        raise NotFound("quiz not found")
    questions = await attempt_flows.load_questions(session=session, quiz_id=quiz.id)
    answers = list(
        await session.scalars(
            sa.select(Answer)
            .where(Answer.attempt_id == attempt.id, Answer.deleted_at.is_(None))
            .order_by(Answer.answered_at, Answer.id)
        )
    )
    result = None
    if attempt.status is AttemptStatus.SUBMITTED:
        certificate = await _course_certificate(session, attempt.learner_id, quiz.course_id)
        result = attempt_result_out(
            attempt,
            quiz,
            questions,
            answers,
            CertificateOut.of(certificate, verify_base_url=verify_base_url) if certificate else None,
            answers_revealed=await attempt_flows.answers_revealed(
                session=session, learner_id=attempt.learner_id, quiz=quiz
            ),
        )
    return AttemptOut(
        id=attempt.id,
        quiz_id=attempt.quiz_id,
        learner_id=attempt.learner_id,
        number=attempt.number,
        status=attempt.status,
        channel=attempt.channel,
        started_at=attempt.started_at,
        submitted_at=attempt.submitted_at,
        quiz=QuizInfo.model_validate(quiz),
        questions=[question_out(q) for q in questions],
        answers=[AnswerOut.model_validate(a) for a in answers],
        result=result,
    )


async def _course_certificate(session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID) -> Certificate | None:
    certificate = await session.get(Certificate, natural_id("certificate", learner_id, course_id))
    if certificate is None or certificate.deleted_at is not None:
        return None
    return certificate


# --- certificates -------------------------------------------------------------------------


async def list_certificates(
    *, session: AsyncSession, actor: Actor, query: CertificateListQuery
) -> tuple[Sequence[Certificate], str | None]:
    stmt = learner_scope(
        sa.select(Certificate).where(Certificate.deleted_at.is_(None)),
        learner_column=Certificate.learner_id,
        institution_column=Certificate.institution_id,
        actor=actor,
    )
    if query.learner_id is not None:
        stmt = stmt.where(Certificate.learner_id == query.learner_id)
    if query.course_id is not None:
        stmt = stmt.where(Certificate.course_id == query.course_id)
    return await paginate(session, stmt, Certificate.id, cursor=query.cursor, limit=query.limit)


async def get_certificate(*, session: AsyncSession, actor: Actor, certificate_id: uuid.UUID) -> Certificate:
    certificate = await session.get(Certificate, certificate_id)
    ensure_learners_row(certificate, actor, what="certificate")
    assert certificate is not None
    return certificate


async def printable_certificate(
    *, session: AsyncSession, actor: Actor, certificate_id: uuid.UUID, verify_base_url: str
) -> CertificateView:
    certificate = await get_certificate(session=session, actor=actor, certificate_id=certificate_id)
    return await certificate_flows.certificate_view(
        session=session, certificate=certificate, verify_base_url=verify_base_url
    )


async def verify_certificate(*, session: AsyncSession, code: str, verify_base_url: str) -> CertificateView:
    """Anyone holding a code may check it, whichever institution issued it."""
    if len(code) > 64:  # no real code is near this long, even typed with spaces and dashes
        raise NotFound("no certificate has this code", code="certificate_not_found")
    certificate = await certificate_flows.find_certificate(session=session, code=code)
    return await certificate_flows.certificate_view(
        session=session, certificate=certificate, verify_base_url=verify_base_url
    )
