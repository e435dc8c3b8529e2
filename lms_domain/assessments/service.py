"""Quiz attempts: start, answer, submit and grade. One flow for REST, USSD and the edge."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.certificates import refresh_completion
from lms_domain.assessments.models import (
    Answer,
    Attempt,
    AttemptStatus,
    Certificate,
    Channel,
    Question,
    QuestionChoice,
    Quiz,
)
from lms_domain.clock import Clock
from lms_domain.courses.service import active_enrollment, ensure_learner_may_open, get_course_for
from lms_domain.errors import Conflict, InvalidInput, NotFound, PreconditionFailed
from lms_domain.i18n import pick
from lms_domain.ids import natural_id, new_id
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.locks import locked_learner


@dataclass(frozen=True)
class QuestionWithChoices:
    question: Question
    choices: list[QuestionChoice]


async def load_questions(*, session: AsyncSession, quiz_id: uuid.UUID) -> list[QuestionWithChoices]:
    """Questions in order with their choices in order (two queries, no lazy loads)."""
    questions = await session.scalars(
        sa.select(Question)
        .where(Question.quiz_id == quiz_id, Question.deleted_at.is_(None))
        .order_by(Question.position, Question.id)
    )
    return await with_choices(session=session, questions=list(questions))


async def with_choices(*, session: AsyncSession, questions: Sequence[Question]) -> list[QuestionWithChoices]:
    """Each question with its live choices in order, in one query for all of them."""
    by_question: dict[uuid.UUID, list[QuestionChoice]] = {q.id: [] for q in questions}
    if by_question:
        choices = await session.scalars(
            sa.select(QuestionChoice)
            .where(QuestionChoice.question_id.in_(list(by_question)), QuestionChoice.deleted_at.is_(None))
            .order_by(QuestionChoice.position, QuestionChoice.id)
        )
        for choice in choices:
            by_question[choice.question_id].append(choice)
    return [QuestionWithChoices(q, by_question[q.id]) for q in questions]


@dataclass(frozen=True)
class AttemptCounts:
    started: int
    submitted: int
    passed: int


async def attempt_counts(*, session: AsyncSession, learner_id: uuid.UUID, quiz_id: uuid.UUID) -> AttemptCounts:
    """One query for every limit and reveal rule: started, submitted and passed attempts."""
    row = (
        await session.execute(
            sa.select(
                sa.func.count(Attempt.id),
                sa.func.count(Attempt.id).filter(Attempt.status == AttemptStatus.SUBMITTED),
                sa.func.count(Attempt.id).filter(Attempt.status == AttemptStatus.SUBMITTED, Attempt.passed.is_(True)),
            ).where(Attempt.learner_id == learner_id, Attempt.quiz_id == quiz_id, Attempt.deleted_at.is_(None))
        )
    ).one()
    return AttemptCounts(started=int(row[0]), submitted=int(row[1]), passed=int(row[2]))


def _no_attempts_left(quiz: Quiz, counts: AttemptCounts) -> bool:
    return quiz.max_attempts is not None and counts.submitted >= quiz.max_attempts


def _refuse_more_attempts(quiz: Quiz) -> PreconditionFailed:
    return PreconditionFailed(
        f"no attempts left (maximum {quiz.max_attempts})",
        code="max_attempts_reached",
        max_attempts=quiz.max_attempts,
    )


async def answers_revealed(*, session: AsyncSession, learner_id: uuid.UUID, quiz: Quiz) -> bool:
    """Whether the learner may see the quiz's correct answers: once they passed it, or have
    no attempt left to use them in. Earlier, a blank first attempt would hand out the key."""
    counts = await attempt_counts(session=session, learner_id=learner_id, quiz_id=quiz.id)
    return counts.passed > 0 or _no_attempts_left(quiz, counts)


async def start_attempt(
    *, session: AsyncSession, learner_id: uuid.UUID, quiz_id: uuid.UUID, clock: Clock, channel: Channel = Channel.WEB
) -> Attempt:
    """Start an attempt, or resume the one already in progress."""
    attempt, _resumed = await open_attempt(
        session=session, learner_id=learner_id, quiz_id=quiz_id, clock=clock, channel=channel
    )
    return attempt


async def open_attempt(
    *, session: AsyncSession, learner_id: uuid.UUID, quiz_id: uuid.UUID, clock: Clock, channel: Channel = Channel.WEB
) -> tuple[Attempt, bool]:
    """``start_attempt``, also telling whether the attempt was resumed: only a resumed one can
    hold answers already, so a channel that shows the next unanswered question reads them
    only then."""
    learner = await locked_learner(session, learner_id)
    quiz = await session.get(Quiz, quiz_id)
    if quiz is None or quiz.deleted_at is not None or not quiz.is_published:
        raise NotFound("quiz not found")
    # Held here: the session's identity map keeps objects only while something refers to them.
    course = await get_course_for(session=session, learner=learner, course_id=quiz.course_id)
    await ensure_learner_may_open(session=session, who=learner, course=course)
    await active_enrollment(session=session, learner=learner, course_id=quiz.course_id)

    counts = await attempt_counts(session=session, learner_id=learner.id, quiz_id=quiz.id)
    # Checked before resuming too: an open attempt past the limit could never be submitted.
    if _no_attempts_left(quiz, counts):
        raise _refuse_more_attempts(quiz)
    in_progress = await session.scalar(
        sa.select(Attempt)
        .where(
            Attempt.learner_id == learner.id,
            Attempt.quiz_id == quiz.id,
            Attempt.status == AttemptStatus.IN_PROGRESS,
            Attempt.deleted_at.is_(None),
        )
        .order_by(Attempt.started_at.desc())
        .limit(1)
    )
    if in_progress is not None:
        return in_progress, True
    attempt = Attempt(
        id=new_id(),
        institution_id=learner.institution_id,
        learner_id=learner.id,
        quiz_id=quiz.id,
        number=counts.started + 1,
        channel=channel,
        started_at=clock.now(),
    )
    session.add(attempt)
    await session.flush()
    return attempt, False


async def _own_attempt(session: AsyncSession, learner_id: uuid.UUID, attempt_id: uuid.UUID) -> Attempt:
    attempt = await session.get(Attempt, attempt_id)
    if attempt is None or attempt.learner_id != learner_id or attempt.deleted_at is not None:
        raise NotFound("attempt not found")
    return attempt


async def answer_question(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    attempt_id: uuid.UUID,
    question_id: uuid.UUID,
    choice_id: uuid.UUID,
    clock: Clock,
) -> Answer:
    """Record (or change) the answer to one question while the attempt is open."""
    attempt = await _own_attempt(session, learner_id, attempt_id)
    if attempt.status is not AttemptStatus.IN_PROGRESS:
        raise Conflict("this attempt is already submitted", code="attempt_closed")
    question = await session.get(Question, question_id)
    if question is None or question.quiz_id != attempt.quiz_id or question.deleted_at is not None:
        raise InvalidInput("that question is not part of this quiz", code="question_not_in_quiz")
    choice = await session.get(QuestionChoice, choice_id)
    if choice is None or choice.question_id != question.id or choice.deleted_at is not None:
        raise InvalidInput("that choice does not belong to the question", code="choice_not_in_question")
    answer_id = natural_id("answer", attempt.id, question.id)
    answer = await session.get(Answer, answer_id)
    now = clock.now()
    if answer is None:
        answer = Answer(
            id=answer_id,
            institution_id=attempt.institution_id,
            attempt_id=attempt.id,
            question_id=question.id,
            choice_id=choice.id,
            answered_at=now,
        )
        session.add(answer)
    elif answer.choice_id != choice.id:
        answer.choice_id = choice.id
        answer.answered_at = now
    await session.flush()
    return answer


def _apply_answers(
    attempt: Attempt,
    questions: list[QuestionWithChoices],
    given: dict[uuid.UUID, Answer],
    answers: Mapping[uuid.UUID, uuid.UUID],
    *,
    now: datetime,
) -> None:
    """Record ``answers`` (question -> choice) into ``given``, with ``answer_question``'s rules."""
    by_question = {item.question.id: item for item in questions}
    for question_id, choice_id in answers.items():
        item = by_question.get(question_id)
        if item is None:
            raise InvalidInput("that question is not part of this quiz", code="question_not_in_quiz")
        if all(choice.id != choice_id for choice in item.choices):
            raise InvalidInput("that choice does not belong to the question", code="choice_not_in_question")
        answer = given.get(question_id)
        if answer is None:
            given[question_id] = Answer(
                id=natural_id("answer", attempt.id, question_id),
                institution_id=attempt.institution_id,
                attempt_id=attempt.id,
                question_id=question_id,
                choice_id=choice_id,
                answered_at=now,
            )
        elif answer.choice_id != choice_id:
            answer.choice_id, answer.answered_at = choice_id, now


@dataclass(frozen=True)
class AttemptResult:
    attempt: Attempt
    certificate: Certificate | None


async def submit_attempt(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    attempt_id: uuid.UUID,
    clock: Clock,
    answers: Mapping[uuid.UUID, uuid.UUID] | None = None,
) -> AttemptResult:
    """Apply any last answers, grade, and close the attempt. Submitting again returns the
    stored result unchanged (USSD gateways repeat requests)."""
    # Locked before anything is read or written, in the same order as start_attempt.
    learner = await locked_learner(session, learner_id)
    attempt = await _own_attempt(session, learner_id, attempt_id)
    if attempt.status is AttemptStatus.SUBMITTED:
        certificate = await session.get(
            Certificate, natural_id("certificate", learner.id, await _course_of(session, attempt))
        )
        return AttemptResult(attempt, certificate)
    if attempt.status is not AttemptStatus.IN_PROGRESS:
        raise Conflict("this attempt was abandoned", code="attempt_closed")
    quiz = await session.get(Quiz, attempt.quiz_id)
    if quiz is None:
        raise NotFound("quiz not found")
    # An attempt opened before the limit was reached (another device, a lowered limit)
    # counts only while there is room for it.
    if _no_attempts_left(quiz, await attempt_counts(session=session, learner_id=learner.id, quiz_id=quiz.id)):
        raise _refuse_more_attempts(quiz)
    questions = await load_questions(session=session, quiz_id=quiz.id)
    given = {a.question_id: a for a in await session.scalars(sa.select(Answer).where(Answer.attempt_id == attempt.id))}
    # The last answers are checked against the questions just loaded and applied in memory, so
    # the whole submission is one flush: one change-sequence take, held only until commit.
    _apply_answers(attempt, questions, given, answers or {}, now=clock.now())
    score = 0
    max_points = 0
    for item in questions:
        max_points += item.question.points
        answer = given.get(item.question.id)
        correct_ids = {c.id for c in item.choices if c.is_correct}
        is_correct = answer is not None and answer.choice_id in correct_ids
        if answer is not None:
            answer.is_correct = is_correct
        if is_correct:
            score += item.question.points
    percent = score * 100 // max_points if max_points else 0
    attempt.score_points = score
    attempt.max_points = max_points
    attempt.score_percent = percent
    attempt.passed = max_points > 0 and percent >= quiz.pass_mark_percent
    attempt.status = AttemptStatus.SUBMITTED
    attempt.submitted_at = clock.now()
    with session.no_autoflush:  # queued before the attempt's synced flush, which takes the counter
        await notify_learner(
            session=session,
            learner_id=learner.id,
            event="quiz_result",
            values={
                "quiz_title": pick(learner.language, quiz.title_en, quiz.title_sw),
                "score": score,
                "max_score": max_points,
            },
            dedupe_key=f"quiz_result:{attempt.id}",
            now=clock.now(),
        )
    session.add_all(given.values())
    await session.flush()

    certificate = None
    if attempt.passed and quiz.is_final:
        certificate = await refresh_completion(session=session, learner=learner, course_id=quiz.course_id, clock=clock)
    return AttemptResult(attempt, certificate)


async def _course_of(session: AsyncSession, attempt: Attempt) -> uuid.UUID:
    quiz = await session.get(Quiz, attempt.quiz_id)
    if quiz is None:
        raise NotFound("quiz not found")
    return quiz.course_id
