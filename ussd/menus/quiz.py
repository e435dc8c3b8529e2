"""Take a quiz: course, quiz, one question per screen, then the score.

The attempt is started and submitted through ``lms_domain.assessments`` exactly as over
REST. Answers wait in the session (and the per-phone resume record) until the last
question, so a question hop touches no database, and a dropped session loses nothing it
had: a redial within the resume window continues at the same question.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import ClassVar

from lms_domain.assessments import service as attempts
from lms_domain.assessments.certificates import format_code
from lms_domain.assessments.models import Channel
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, PreconditionFailed
from lms_domain.i18n import pick
from lms_domain.learning.summaries import QuizContent, Titled, course_quizzes, enrolled_courses, given_answers
from ussd.layout import clean
from ussd.screens import Ctx, End, Go, Outcome, Stay, View, choice, numbered
from ussd.session_store import Frame, QuizRun, Resume, resume_key


def _titles(rows: list[list[str | None]], ctx: Ctx) -> list[str]:
    return [clean(pick(ctx.language, str(en), sw)) for _id, en, sw in rows]


async def _listed(frame: Frame, key: str, load: Callable[[], Awaitable[list[Titled]]]) -> list[list[str | None]]:
    """A list a screen shows, loaded once per visit and kept in its frame: paging through it,
    a wrong choice and going back to it need no database."""
    if key not in frame.args:
        frame.args[key] = [[str(row.id), row.title_en, row.title_sw] for row in await load()]
    rows: list[list[str | None]] = frame.args[key]
    return rows


class CoursesScreen:
    name: ClassVar[str] = "courses"
    free_text: ClassVar[bool] = False

    async def _rows(self, ctx: Ctx, frame: Frame) -> list[list[str | None]]:
        async def load() -> list[Titled]:
            async with ctx.deps.read_sessions() as session:
                return await enrolled_courses(session=session, learner_id=ctx.learner_id)

        return await _listed(frame, "courses", load)

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        rows = await self._rows(ctx, frame)
        if not rows:
            return View(ctx.t("quiz.no_courses"))
        return View(ctx.t("quiz.courses"), numbered(_titles(rows, ctx)))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        rows = await self._rows(ctx, frame)
        picked = choice(value, len(rows))
        if picked is None:
            return Stay(ctx.t("error.choice"))
        course_id, en, sw = rows[picked]
        return Go(Frame(screen="quizzes", args={"course_id": course_id, "course": [en, sw]}))


class QuizzesScreen:
    name: ClassVar[str] = "quizzes"
    free_text: ClassVar[bool] = False

    async def _rows(self, ctx: Ctx, frame: Frame) -> list[list[str | None]]:
        async def load() -> list[Titled]:
            course_id = uuid.UUID(frame.args["course_id"])
            async with ctx.deps.read_sessions() as session:
                return await course_quizzes(session=session, learner_id=ctx.learner_id, course_id=course_id)

        return await _listed(frame, "quizzes", load)

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        rows = await self._rows(ctx, frame)
        if not rows:
            return View(ctx.t("quiz.no_quizzes"))
        en, sw = frame.args["course"]
        course = clean(pick(ctx.language, en, sw))
        return View(ctx.t("quiz.quizzes", course=course), numbered(_titles(rows, ctx)))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        rows = await self._rows(ctx, frame)
        picked = choice(value, len(rows))
        if picked is None:
            return Stay(ctx.t("error.choice"))
        quiz_id = uuid.UUID(str(rows[picked][0]))
        try:
            async with ctx.deps.sessions() as session, session.begin():
                attempt, resumed = await attempts.open_attempt(
                    session=session,
                    learner_id=ctx.learner_id,
                    quiz_id=quiz_id,
                    clock=ctx.deps.clock,
                    channel=Channel.USSD,
                )
                # A resumed attempt wrote nothing, so this read holds no change counter; a new
                # one has no answers to read.
                stored = await given_answers(session=session, attempt_id=attempt.id) if resumed else {}
            content = await ctx.deps.quizzes.get(quiz_id)
        except PreconditionFailed as refused:
            key = "quiz.no_attempts" if refused.code == "max_attempts_reached" else "quiz.locked"
            return Stay(ctx.t(key))
        except PermissionDenied:
            return Stay(ctx.t("quiz.locked"))
        except NotFound:
            return Stay(ctx.t("quiz.gone"))
        if not content.questions:
            return Stay(ctx.t("quiz.gone"))
        run = QuizRun(
            attempt_id=str(attempt.id),
            quiz_id=str(quiz_id),
            answers={str(q): str(c) for q, c in stored.items()},
        )
        ctx.state.quiz = run
        first = next(
            (i for i, q in enumerate(content.questions) if str(q.id) not in run.answers), len(content.questions) - 1
        )
        await _save_resume(ctx, content, first)
        return Go(Frame(screen="question", args={"index": first}))


async def _save_resume(ctx: Ctx, content: QuizContent, index: int) -> None:
    assert ctx.state.quiz is not None and ctx.state.learner_id is not None
    record = Resume(
        learner_id=ctx.state.learner_id,
        name=ctx.state.learner_name,
        language=ctx.language,
        quiz=ctx.state.quiz,
        question=index,
        total=len(content.questions),
    )
    ctx.writes[resume_key(ctx.hop.phone, ctx.state.learner_id)] = (record.model_dump_json(), ctx.deps.resume_ttl_s)


async def resume_quiz(ctx: Ctx, saved: Resume) -> Outcome:
    """Continue a dropped quiz at the question it stopped on (after the PIN was entered)."""
    try:
        content = await ctx.deps.quizzes.get(uuid.UUID(saved.quiz.quiz_id))
    except NotFound:
        return Go(Frame(screen="home"), reset=True, notice=ctx.t("quiz.gone"))
    ctx.state.quiz = saved.quiz
    index = min(saved.question, len(content.questions) - 1)
    return Go(Frame(screen="question", args={"index": index}), reset=True, home_below=True)


class QuestionScreen:
    name: ClassVar[str] = "question"
    free_text: ClassVar[bool] = False

    async def _content(self, ctx: Ctx) -> QuizContent:
        if ctx.state.quiz is None:
            raise NotFound("no quiz is running in this session")
        return await ctx.deps.quizzes.get(uuid.UUID(ctx.state.quiz.quiz_id))

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        content = await self._content(ctx)
        index = int(frame.args["index"])
        question = content.questions[index]
        prompt = clean(pick(ctx.language, question.prompt_en, question.prompt_sw))
        header = ctx.t("quiz.question", number=index + 1, total=len(content.questions), prompt=prompt)
        return View(header, numbered([clean(pick(ctx.language, c.text_en, c.text_sw)) for c in question.choices]))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        content = await self._content(ctx)
        index = int(frame.args["index"])
        question = content.questions[index]
        picked = choice(value, len(question.choices))
        if picked is None:
            return Stay(ctx.t("error.choice"))
        run = ctx.state.quiz
        assert run is not None
        run.answers[str(question.id)] = str(question.choices[picked].id)
        if index + 1 < len(content.questions):
            await _save_resume(ctx, content, index + 1)
            return Go(Frame(screen="question", args={"index": index + 1}))
        return await _submit(ctx, content, run)


async def _submit(ctx: Ctx, content: QuizContent, run: QuizRun) -> Outcome:
    """Submit with every answer. Whatever the domain answers, this quiz run and its resume record
    end here, so a learner is never left on a question that can no longer be submitted; only an
    unexpected failure (the database down) keeps the record, to submit on redial."""
    choices = {str(q.id): {str(c.id) for c in q.choices} for q in content.questions}
    answers = {uuid.UUID(q): uuid.UUID(c) for q, c in run.answers.items() if c in choices.get(q, ())}
    try:
        async with ctx.deps.sessions() as session, session.begin():
            result = await attempts.submit_attempt(
                session=session,
                learner_id=ctx.learner_id,
                attempt_id=uuid.UUID(run.attempt_id),
                clock=ctx.deps.clock,
                answers=answers,
            )
            attempt, certificate = result.attempt, result.certificate
    except PreconditionFailed:
        closing = ctx.t("quiz.no_attempts")
    except (NotFound, Conflict, InvalidInput):  # deleted, closed elsewhere, or edited meanwhile
        closing = ctx.t("quiz.gone")
    else:
        closing = ""
    ctx.state.quiz = None
    ctx.writes.pop(resume_key(ctx.hop.phone, str(ctx.learner_id)), None)
    await ctx.deps.store.delete(resume_key(ctx.hop.phone, str(ctx.learner_id)))
    if closing:
        return End(closing)
    title = clean(pick(ctx.language, content.title_en, content.title_sw))
    values = {
        "score": attempt.score_points or 0,
        "max": attempt.max_points or 0,
        "percent": attempt.score_percent or 0,
        "quiz": title,
        "pass_mark": content.pass_mark_percent,
    }
    if not attempt.passed:
        return End(ctx.t("quiz.result_fail", **values))
    closing = ctx.t("quiz.result_pass", **values)
    if certificate is not None:
        closing += ctx.t("quiz.certificate", code=format_code(certificate.code))
    return End(closing)
