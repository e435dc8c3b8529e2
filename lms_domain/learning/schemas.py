"""Learning schemas: what learners and staff send and get back about enrollments, lesson
progress, quiz attempts and certificates.

Before an attempt is submitted nothing here carries whether a choice is correct: the
pre-submit models have no such field, so no handler can leak one by accident. A graded
attempt shows which answers were right only once the learner passed the quiz or has no
attempt left (``answers_revealed``); before that the key would help the next attempt.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from lms_domain.assessments.certificates import format_code
from lms_domain.assessments.models import Answer, Attempt, AttemptStatus, Certificate, Channel, Quiz
from lms_domain.assessments.ports import CertificateView
from lms_domain.assessments.service import QuestionWithChoices
from lms_domain.courses.models import EnrollmentStatus
from lms_domain.courses.schemas import ListQuery

# Earlier than this, a reported time comes from a reset device clock (1970, 2000...).
EARLIEST_OBSERVATION = datetime(2020, 1, 1, tzinfo=UTC)
MAX_ANSWERS = 500

LEARNER_ID_HELP = "Staff only: the learner of your institution to act for. Learners act for themselves."


# --- enrollments --------------------------------------------------------------------------


class EnrollmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: uuid.UUID
    learner_id: uuid.UUID | None = Field(default=None, description=LEARNER_ID_HELP)


class EnrollmentListQuery(ListQuery):
    learner_id: uuid.UUID | None = None
    course_id: uuid.UUID | None = None
    status: EnrollmentStatus | None = None


class EnrollmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID
    course_id: uuid.UUID
    status: EnrollmentStatus
    enrolled_at: datetime
    completed_at: datetime | None
    updated_at: datetime


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None = None


class LearnerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: uuid.UUID | None = Field(default=None, description=LEARNER_ID_HELP)


# --- lesson progress ----------------------------------------------------------------------


class ProgressUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: int = Field(ge=0, le=100, description="Progress only ever rises; a lower report changes nothing.")
    observed_at: AwareDatetime | None = Field(
        default=None,
        description=(
            "When the device saw it (offline reports); needs a timezone. Defaults to now; a time "
            "in the future or before 2020 (a device clock that was reset) also counts as now."
        ),
    )
    learner_id: uuid.UUID | None = Field(default=None, description=LEARNER_ID_HELP)

    @field_validator("observed_at")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return value.astimezone(UTC)
        except OverflowError:
            return None  # beyond what a datetime holds: a clock we cannot use, so "now"


class LessonProgressOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    learner_id: uuid.UUID
    lesson_id: uuid.UUID
    course_id: uuid.UUID
    percent: int
    first_seen_at: datetime
    last_seen_at: datetime
    completed_at: datetime | None


class LessonProgressItem(BaseModel):
    lesson_id: uuid.UUID
    section_id: uuid.UUID
    position: int
    title_en: str
    title_sw: str | None
    percent: int
    last_seen_at: datetime | None
    completed_at: datetime | None


class CourseProgressOut(BaseModel):
    course_id: uuid.UUID
    learner_id: uuid.UUID
    enrollment_id: uuid.UUID | None
    enrollment_status: EnrollmentStatus | None = Field(description="Null when the learner never enrolled.")
    percent: int = Field(description="Lessons completed, as a whole percentage of the course's lessons.")
    lessons_total: int
    lessons_completed: int
    lessons: list[LessonProgressItem]
    certificate_id: uuid.UUID | None
    certificate_code: str | None


# --- certificates -------------------------------------------------------------------------


class CertificateListQuery(ListQuery):
    learner_id: uuid.UUID | None = None
    course_id: uuid.UUID | None = None


class CertificateOut(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    learner_id: uuid.UUID
    course_id: uuid.UUID
    code: str = Field(description="The verification code as printed, e.g. `7K2QD-M9XTA`.")
    learner_name: str
    course_title: str
    score_percent: int
    issued_at: datetime
    revoked_at: datetime | None
    verify_url: str

    @classmethod
    def of(cls, certificate: Certificate, *, verify_base_url: str) -> CertificateOut:
        return cls(
            id=certificate.id,
            institution_id=certificate.institution_id,
            learner_id=certificate.learner_id,
            course_id=certificate.course_id,
            code=format_code(certificate.code),
            learner_name=certificate.learner_name,
            course_title=certificate.course_title,
            score_percent=certificate.score_percent,
            issued_at=certificate.issued_at,
            revoked_at=certificate.revoked_at,
            verify_url=verify_url(verify_base_url, certificate.code),
        )


class CertificatePage(BaseModel):
    items: list[CertificateOut]
    next_cursor: str | None = None


class CertificateVerification(BaseModel):
    """What anyone holding a code may learn: enough to trust a paper certificate, no more."""

    valid: bool = Field(description="True unless the certificate was revoked.")
    code: str
    learner_name: str
    course_title: str
    institution_name: str
    issued_at: datetime
    revoked: bool

    @classmethod
    def of(cls, view: CertificateView) -> CertificateVerification:
        return cls(
            valid=not view.revoked,
            code=view.code,
            learner_name=view.learner_name,
            course_title=view.course_title,
            institution_name=view.institution_name,
            issued_at=view.issued_at_local.astimezone(UTC),
            revoked=view.revoked,
        )


def verify_url(base_url: str, code: str) -> str:
    return f"{base_url.rstrip('/')}/verify/{code}"


# --- attempts -----------------------------------------------------------------------------


class AttemptStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner_id: uuid.UUID | None = Field(default=None, description=LEARNER_ID_HELP)
    channel: Literal[Channel.WEB, Channel.APP] = Channel.WEB


class AnswerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice_id: uuid.UUID


class AttemptSubmit(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answers: dict[uuid.UUID, uuid.UUID] | None = Field(
        default=None,
        max_length=MAX_ANSWERS,
        description="Last answers to record before grading: question id -> choice id.",
    )


class AttemptListQuery(ListQuery):
    quiz_id: uuid.UUID | None = None
    learner_id: uuid.UUID | None = Field(default=None, description="Staff only: one learner's attempts.")
    status: AttemptStatus | None = None


class QuizInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    course_id: uuid.UUID
    title_en: str
    title_sw: str | None
    pass_mark_percent: int
    max_attempts: int | None
    is_final: bool


class ChoiceOut(BaseModel):
    """A choice as a learner sees it while answering: deliberately without correctness."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    text_en: str
    text_sw: str | None


class QuestionOut(BaseModel):
    id: uuid.UUID
    position: int
    prompt_en: str
    prompt_sw: str | None
    points: int
    choices: list[ChoiceOut]


class AnswerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt_id: uuid.UUID
    question_id: uuid.UUID
    choice_id: uuid.UUID | None
    answered_at: datetime


class QuestionResult(BaseModel):
    question_id: uuid.UUID
    points: int
    choice_id: uuid.UUID | None = Field(description="The learner's answer; null when left blank.")
    correct: bool | None = Field(description="Whether the answer scored; null while the answers are not revealed.")
    correct_choice_ids: list[uuid.UUID] = Field(
        description="Any of these choices scores the question; empty while the answers are not revealed."
    )


class AttemptResultOut(BaseModel):
    """The graded attempt: the score at once, the correct answers only once revealed."""

    id: uuid.UUID
    quiz_id: uuid.UUID
    learner_id: uuid.UUID
    number: int
    status: AttemptStatus
    started_at: datetime
    submitted_at: datetime | None
    score_points: int
    max_points: int
    percent: int
    pass_mark_percent: int
    passed: bool
    answers_revealed: bool = Field(
        description=(
            "True once the learner passed this quiz or has no attempt left; until then each "
            "question's `correct` is null and `correct_choice_ids` empty."
        )
    )
    questions: list[QuestionResult]
    certificate: CertificateOut | None = Field(description="The course certificate, once this attempt completed it.")


class AttemptOut(BaseModel):
    id: uuid.UUID
    quiz_id: uuid.UUID
    learner_id: uuid.UUID
    number: int
    status: AttemptStatus
    channel: Channel
    started_at: datetime
    submitted_at: datetime | None
    quiz: QuizInfo
    questions: list[QuestionOut]
    answers: list[AnswerOut]
    result: AttemptResultOut | None = Field(description="Null until the attempt is submitted.")


class AttemptSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    quiz_id: uuid.UUID
    learner_id: uuid.UUID
    number: int
    status: AttemptStatus
    channel: Channel
    started_at: datetime
    submitted_at: datetime | None
    score_percent: int | None
    passed: bool | None


class AttemptPage(BaseModel):
    items: list[AttemptSummary]
    next_cursor: str | None = None


def question_out(item: QuestionWithChoices) -> QuestionOut:
    q = item.question
    return QuestionOut(
        id=q.id,
        position=q.position,
        prompt_en=q.prompt_en,
        prompt_sw=q.prompt_sw,
        points=q.points,
        choices=[ChoiceOut.model_validate(c) for c in item.choices],
    )


def attempt_result_out(
    attempt: Attempt,
    quiz: Quiz,
    questions: list[QuestionWithChoices],
    answers: list[Answer],
    certificate: CertificateOut | None,
    *,
    answers_revealed: bool,
) -> AttemptResultOut:
    """Grade shown from what was stored at submission, so a later edit of the quiz cannot
    rewrite a learner's past result (questions added since count as unanswered). Which
    answers were right, and the right ones, only with ``answers_revealed``."""
    if attempt.status is not AttemptStatus.SUBMITTED:
        raise ValueError("only a submitted attempt has a result")
    given = {a.question_id: a for a in answers}
    results = []
    for item in questions:
        answer = given.get(item.question.id)
        results.append(
            QuestionResult(
                question_id=item.question.id,
                points=item.question.points,
                choice_id=answer.choice_id if answer else None,
                correct=bool(answer and answer.is_correct) if answers_revealed else None,
                correct_choice_ids=[c.id for c in item.choices if c.is_correct] if answers_revealed else [],
            )
        )
    return AttemptResultOut(
        id=attempt.id,
        quiz_id=attempt.quiz_id,
        learner_id=attempt.learner_id,
        number=attempt.number,
        status=attempt.status,
        started_at=attempt.started_at,
        submitted_at=attempt.submitted_at,
        score_points=attempt.score_points or 0,
        max_points=attempt.max_points or 0,
        percent=attempt.score_percent or 0,
        pass_mark_percent=quiz.pass_mark_percent,
        passed=bool(attempt.passed),
        answers_revealed=answers_revealed,
        questions=results,
        certificate=certificate,
    )
