"""Course completion and certificates."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.models import Attempt, AttemptStatus, Certificate, Quiz
from lms_domain.assessments.ports import CertificateView
from lms_domain.clock import Clock, to_nairobi
from lms_domain.courses.models import Course, Enrollment, EnrollmentStatus
from lms_domain.courses.progress import course_progress
from lms_domain.errors import NotFound, PreconditionFailed
from lms_domain.i18n import pick
from lms_domain.ids import crockford_code, natural_id
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.models import Institution, Learner

CODE_LENGTH = 10
_CROCKFORD_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})


def certificate_code(certificate_id: uuid.UUID) -> str:
    """The public verification code, derived from the deterministic certificate id so two
    offline nodes issuing the same certificate print the same code."""
    return crockford_code(b"somo-certificate:" + certificate_id.bytes, CODE_LENGTH)


def normalize_code(raw: str) -> str:
    """Accept what people type: lower case, spaces, dashes, O for 0, I or L for 1."""
    return re.sub(r"[^0-9A-Z]", "", raw.upper()).translate(_CROCKFORD_ALIASES)


def format_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


async def _final_quizzes(session: AsyncSession, course_id: uuid.UUID) -> list[Quiz]:
    """Published ones only: a draft cannot be taken, so it must not hold certificates back."""
    rows = await session.scalars(
        sa.select(Quiz).where(
            Quiz.course_id == course_id,
            Quiz.is_final.is_(True),
            Quiz.is_published.is_(True),
            Quiz.deleted_at.is_(None),
        )
    )
    return list(rows)


async def _best_passed_attempt(session: AsyncSession, learner_id: uuid.UUID, quiz_id: uuid.UUID) -> Attempt | None:
    return await session.scalar(
        sa.select(Attempt)
        .where(
            Attempt.learner_id == learner_id,
            Attempt.quiz_id == quiz_id,
            Attempt.status == AttemptStatus.SUBMITTED,
            Attempt.passed.is_(True),
            Attempt.deleted_at.is_(None),
        )
        .order_by(Attempt.score_percent.desc(), Attempt.submitted_at)
        .limit(1)
    )


async def refresh_completion(
    *, session: AsyncSession, learner: Learner, course_id: uuid.UUID, clock: Clock
) -> Certificate | None:
    """Complete the enrollment and issue the certificate once every lesson is done and
    every final quiz passed. Safe to call after any progress or grading event."""
    enrollment = await session.get(Enrollment, natural_id("enrollment", learner.id, course_id))
    if enrollment is None or enrollment.status is EnrollmentStatus.WITHDRAWN:
        return None
    progress = await course_progress(session=session, learner_id=learner.id, course_id=course_id)
    if progress.lessons_completed < progress.lessons_total:
        return None
    finals = await _final_quizzes(session, course_id)
    best: list[Attempt] = []
    for quiz in finals:
        attempt = await _best_passed_attempt(session, learner.id, quiz.id)
        if attempt is None:
            return None
        best.append(attempt)
    if not finals and progress.lessons_total == 0:
        return None  # an empty course completes nothing
    now = clock.now()
    if enrollment.status is not EnrollmentStatus.COMPLETED:
        enrollment.status = EnrollmentStatus.COMPLETED
        enrollment.completed_at = now
    return await _issue(session, learner, course_id, best, now)


async def _issue(
    session: AsyncSession, learner: Learner, course_id: uuid.UUID, best: list[Attempt], now: datetime
) -> Certificate:
    certificate_id = natural_id("certificate", learner.id, course_id)
    existing = await session.get(Certificate, certificate_id)
    if existing is not None:
        return existing
    course = await session.get(Course, course_id)
    if course is None:
        raise NotFound("course not found")
    score = min((a.score_percent or 0) for a in best) if best else 100
    title = pick(learner.language, course.title_en, course.title_sw)
    code = certificate_code(certificate_id)
    await notify_learner(
        session=session,
        learner_id=learner.id,
        event="certificate_issued",
        values={"course_title": title, "code": code},
        dedupe_key=f"certificate_issued:{certificate_id}",
        now=now,
    )
    certificate = Certificate(
        id=certificate_id,
        institution_id=learner.institution_id,
        learner_id=learner.id,
        course_id=course_id,
        final_attempt_id=best[0].id if best else None,
        code=code,
        learner_name=learner.display_name,
        course_title=title,
        score_percent=score,
        issued_at=now,
    )
    session.add(certificate)
    await session.flush()
    return certificate


async def issue_certificate(
    *, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID, clock: Clock
) -> Certificate:
    """Issue (or return) the certificate; refuses until the course is complete."""
    learner = await session.get(Learner, learner_id)
    if learner is None or learner.deleted_at is not None:
        raise NotFound("learner not found")
    certificate = await refresh_completion(session=session, learner=learner, course_id=course_id, clock=clock)
    if certificate is None:
        raise PreconditionFailed("finish every lesson and pass the final quiz first", code="course_not_complete")
    return certificate


async def find_certificate(*, session: AsyncSession, code: str) -> Certificate:
    """Look a certificate up by its public code (any institution: verification is public)."""
    normalized = normalize_code(code)
    certificate = await session.scalar(sa.select(Certificate).where(Certificate.code == normalized))
    if certificate is None or certificate.deleted_at is not None:
        raise NotFound("no certificate has this code", code="certificate_not_found")
    return certificate


async def certificate_view(*, session: AsyncSession, certificate: Certificate, verify_base_url: str) -> CertificateView:
    institution = await session.get(Institution, certificate.institution_id)
    learner = await session.get(Learner, certificate.learner_id)
    if institution is None or learner is None:
        raise NotFound("certificate not found")
    return CertificateView(
        code=format_code(certificate.code),
        learner_name=certificate.learner_name,
        course_title=certificate.course_title,
        institution_name=institution.name,
        score_percent=certificate.score_percent,
        issued_at_local=to_nairobi(certificate.issued_at),
        verify_url=f"{verify_base_url.rstrip('/')}/verify/{certificate.code}",
        language=learner.language,
        revoked=certificate.revoked_at is not None,
    )
