"""Course structure and quizzes: sections, lessons, assets, tags, prerequisites, questions and choices."""

from __future__ import annotations

from typing import Any

from lms_domain.assessments import authoring as quizzes
from lms_domain.assessments.schemas import (
    AnswerKeyPage,
    AuthorChoiceOut,
    AuthorQuestionOut,
    ChoiceCreate,
    ChoiceUpdate,
    LearnerQuestionOut,
    LearnerQuestionPage,
    QuestionCreate,
    QuestionUpdate,
    QuizCreate,
    QuizOut,
    QuizPage,
    QuizUpdate,
)
from lms_domain.courses import content
from lms_domain.courses.content_schemas import (
    AssetCreate,
    AssetOut,
    AssetPage,
    LessonCreate,
    LessonOut,
    LessonPage,
    LessonSummaryOut,
    LessonUpdate,
    PrerequisiteOut,
    PrerequisitePage,
    SectionCreate,
    SectionOut,
    SectionPage,
    SectionUpdate,
    TagCreate,
    TagOut,
    TagPage,
)
from lms_domain.courses.schemas import ListQuery
from server.api.registry import Api, Call

api = Api(
    "content",
    description="Course structure and quizzes: sections, lessons, assets, tags, prerequisites, questions and choices.",
)


# Sections


@api.get("/courses/{course_id}/sections", summary="List a course's sections", query=ListQuery, response=SectionPage)
async def list_sections(call: Call[Any, ListQuery]) -> SectionPage:
    """In id order; sort by `position` to show them."""
    async with call.read() as session:
        rows, cursor = await content.list_sections(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), query=call.query
        )
        return SectionPage(items=[SectionOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/courses/{course_id}/sections", summary="Add a section", body=SectionCreate, response=SectionOut, status=201)
async def create_section(call: Call[SectionCreate, Any]) -> SectionOut:
    async with call.uow() as session:
        section = await content.create_section(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), data=call.body
        )
        return SectionOut.model_validate(section)


@api.patch("/sections/{section_id}", summary="Change a section", body=SectionUpdate, response=SectionOut)
async def update_section(call: Call[SectionUpdate, Any]) -> SectionOut:
    async with call.uow() as session:
        section = await content.update_section(
            session=session, actor=call.actor, section_id=call.path_uuid("section_id"), data=call.body
        )
        return SectionOut.model_validate(section)


@api.delete(
    "/sections/{section_id}",
    summary="Delete an empty section",
    status=204,
    extra_responses={409: "The section still has lessons or quizzes."},
)
async def delete_section(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await content.delete_section(
            session=session, actor=call.actor, section_id=call.path_uuid("section_id"), clock=call.clock
        )


# Lessons


@api.get("/sections/{section_id}/lessons", summary="List a section's lessons", query=ListQuery, response=LessonPage)
async def list_lessons(call: Call[Any, ListQuery]) -> LessonPage:
    """Without their bodies; get a lesson for those."""
    async with call.read() as session:
        rows, cursor = await content.list_lessons(
            session=session, actor=call.actor, section_id=call.path_uuid("section_id"), query=call.query
        )
        return LessonPage(items=[LessonSummaryOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/sections/{section_id}/lessons", summary="Add a lesson", body=LessonCreate, response=LessonOut, status=201)
async def create_lesson(call: Call[LessonCreate, Any]) -> LessonOut:
    async with call.uow() as session:
        lesson = await content.create_lesson(
            session=session, actor=call.actor, section_id=call.path_uuid("section_id"), data=call.body
        )
        return LessonOut.model_validate(lesson)


@api.get("/lessons/{lesson_id}", summary="Get a lesson", response=LessonOut)
async def get_lesson(call: Call[Any, Any]) -> LessonOut:
    """With its body. 403 `enrollment_required` for a learner not enrolled in a paid course
    (its outline, the lesson list, stays open)."""
    async with call.read() as session:
        lesson = await content.get_lesson(session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"))
        return LessonOut.model_validate(lesson)


@api.patch("/lessons/{lesson_id}", summary="Change or move a lesson", body=LessonUpdate, response=LessonOut)
async def update_lesson(call: Call[LessonUpdate, Any]) -> LessonOut:
    async with call.uow() as session:
        lesson = await content.update_lesson(
            session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"), data=call.body
        )
        return LessonOut.model_validate(lesson)


@api.delete("/lessons/{lesson_id}", summary="Delete a lesson and its assets", status=204)
async def delete_lesson(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await content.delete_lesson(
            session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"), clock=call.clock
        )


# Assets


@api.get("/lessons/{lesson_id}/assets", summary="List a lesson's files", query=ListQuery, response=AssetPage)
async def list_assets(call: Call[Any, ListQuery]) -> AssetPage:
    """403 `enrollment_required` for a learner not enrolled in a paid course."""
    async with call.read() as session:
        rows, cursor = await content.list_assets(
            session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"), query=call.query
        )
        return AssetPage(items=[AssetOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post(
    "/lessons/{lesson_id}/assets", summary="Add a file to a lesson", body=AssetCreate, response=AssetOut, status=201
)
async def create_asset(call: Call[AssetCreate, Any]) -> AssetOut:
    """Records where the file lives and its checksum; the bytes are uploaded elsewhere."""
    async with call.uow() as session:
        asset = await content.create_asset(
            session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"), data=call.body
        )
        return AssetOut.model_validate(asset)


@api.delete("/assets/{asset_id}", summary="Remove a file from its lesson", status=204)
async def delete_asset(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await content.delete_asset(
            session=session, actor=call.actor, asset_id=call.path_uuid("asset_id"), clock=call.clock
        )


# Tags


@api.get("/tags", summary="List tags", query=ListQuery, response=TagPage)
async def list_tags(call: Call[Any, ListQuery]) -> TagPage:
    """The caller's institution's tags and the catalogue's."""
    async with call.read() as session:
        rows, cursor = await content.list_tags(session=session, actor=call.actor, query=call.query)
        return TagPage(items=[TagOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post(
    "/tags",
    summary="Create a tag",
    body=TagCreate,
    response=TagOut,
    status=201,
    extra_responses={409: "The institution already has a tag with that slug."},
)
async def create_tag(call: Call[TagCreate, Any]) -> TagOut:
    async with call.uow() as session:
        return TagOut.model_validate(await content.create_tag(session=session, actor=call.actor, data=call.body))


@api.get("/courses/{course_id}/tags", summary="List a course's tags", query=ListQuery, response=TagPage)
async def list_course_tags(call: Call[Any, ListQuery]) -> TagPage:
    async with call.read() as session:
        rows, cursor = await content.list_course_tags(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), query=call.query
        )
        return TagPage(items=[TagOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.put("/courses/{course_id}/tags/{tag_id}", summary="Tag a course", response=TagOut)
async def attach_course_tag(call: Call[Any, Any]) -> TagOut:
    """Idempotent. The tag must be the course's institution's or a catalogue tag."""
    async with call.uow() as session:
        tag = await content.attach_tag(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), tag_id=call.path_uuid("tag_id")
        )
        return TagOut.model_validate(tag)


@api.delete("/courses/{course_id}/tags/{tag_id}", summary="Untag a course", status=204)
async def detach_course_tag(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await content.detach_tag(
            session=session,
            actor=call.actor,
            course_id=call.path_uuid("course_id"),
            tag_id=call.path_uuid("tag_id"),
            clock=call.clock,
        )


# Prerequisites


@api.get(
    "/courses/{course_id}/prerequisites",
    summary="List the courses a course requires",
    query=ListQuery,
    response=PrerequisitePage,
)
async def list_prerequisites(call: Call[Any, ListQuery]) -> PrerequisitePage:
    async with call.read() as session:
        rows, cursor = await content.list_prerequisites(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), query=call.query
        )
        return PrerequisitePage(items=[PrerequisiteOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.put(
    "/courses/{course_id}/prerequisites/{required_course_id}",
    summary="Require another course first",
    response=PrerequisiteOut,
    extra_responses={409: "The prerequisite would make a cycle.", 422: "A course cannot require itself."},
)
async def add_prerequisite(call: Call[Any, Any]) -> PrerequisiteOut:
    """Idempotent. The required course must be the same institution's or a catalogue course."""
    async with call.uow() as session:
        link = await content.add_prerequisite(
            session=session,
            actor=call.actor,
            course_id=call.path_uuid("course_id"),
            required_course_id=call.path_uuid("required_course_id"),
        )
        return PrerequisiteOut.model_validate(link)


@api.delete("/courses/{course_id}/prerequisites/{required_course_id}", summary="Drop a prerequisite", status=204)
async def remove_prerequisite(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await content.remove_prerequisite(
            session=session,
            actor=call.actor,
            course_id=call.path_uuid("course_id"),
            required_course_id=call.path_uuid("required_course_id"),
            clock=call.clock,
        )


# Quizzes


@api.get("/courses/{course_id}/quizzes", summary="List a course's quizzes", query=ListQuery, response=QuizPage)
async def list_quizzes(call: Call[Any, ListQuery]) -> QuizPage:
    """Learners see only published quizzes."""
    async with call.read() as session:
        rows, cursor = await quizzes.list_quizzes(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), query=call.query
        )
        return QuizPage(items=[QuizOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/courses/{course_id}/quizzes", summary="Add a quiz", body=QuizCreate, response=QuizOut, status=201)
async def create_quiz(call: Call[QuizCreate, Any]) -> QuizOut:
    async with call.uow() as session:
        quiz = await quizzes.create_quiz(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), data=call.body
        )
        return QuizOut.model_validate(quiz)


@api.get("/quizzes/{quiz_id}", summary="Get a quiz", response=QuizOut)
async def get_quiz(call: Call[Any, Any]) -> QuizOut:
    async with call.read() as session:
        return QuizOut.model_validate(
            await quizzes.get_quiz(session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"))
        )


@api.patch("/quizzes/{quiz_id}", summary="Change a quiz", body=QuizUpdate, response=QuizOut)
async def update_quiz(call: Call[QuizUpdate, Any]) -> QuizOut:
    async with call.uow() as session:
        quiz = await quizzes.update_quiz(
            session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"), data=call.body
        )
        return QuizOut.model_validate(quiz)


@api.delete("/quizzes/{quiz_id}", summary="Delete a quiz", status=204)
async def delete_quiz(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await quizzes.delete_quiz(
            session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"), clock=call.clock
        )


# Questions and choices


@api.get(
    "/quizzes/{quiz_id}/questions",
    summary="A quiz's questions, without the answers",
    query=ListQuery,
    response=LearnerQuestionPage,
)
async def list_quiz_questions(call: Call[Any, ListQuery]) -> LearnerQuestionPage:
    """For anyone who can see the quiz; in a paid course learners must be enrolled (403
    `enrollment_required`). Choices carry no `is_correct`: editors read the answer key instead."""
    async with call.read() as session:
        rows, cursor = await quizzes.list_questions(
            session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"), query=call.query
        )
        return LearnerQuestionPage(
            items=[LearnerQuestionOut.of(r.question, r.choices) for r in rows], next_cursor=cursor
        )


@api.get(
    "/quizzes/{quiz_id}/answer-key",
    summary="A quiz's questions with the correct choices",
    query=ListQuery,
    response=AnswerKeyPage,
)
async def get_quiz_answer_key(call: Call[Any, ListQuery]) -> AnswerKeyPage:
    """For the quiz's editors only."""
    async with call.read() as session:
        rows, cursor = await quizzes.answer_key(
            session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"), query=call.query
        )
        return AnswerKeyPage(items=[AuthorQuestionOut.of(r.question, r.choices) for r in rows], next_cursor=cursor)


@api.post(
    "/quizzes/{quiz_id}/questions",
    summary="Add a question",
    body=QuestionCreate,
    response=AuthorQuestionOut,
    status=201,
)
async def create_question(call: Call[QuestionCreate, Any]) -> AuthorQuestionOut:
    async with call.uow() as session:
        created = await quizzes.create_question(
            session=session, actor=call.actor, quiz_id=call.path_uuid("quiz_id"), data=call.body
        )
        return AuthorQuestionOut.of(created.question, created.choices)


@api.patch("/questions/{question_id}", summary="Change a question", body=QuestionUpdate, response=AuthorQuestionOut)
async def update_question(call: Call[QuestionUpdate, Any]) -> AuthorQuestionOut:
    async with call.uow() as session:
        updated = await quizzes.update_question(
            session=session, actor=call.actor, question_id=call.path_uuid("question_id"), data=call.body
        )
        return AuthorQuestionOut.of(updated.question, updated.choices)


@api.delete("/questions/{question_id}", summary="Delete a question", status=204)
async def delete_question(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await quizzes.delete_question(
            session=session, actor=call.actor, question_id=call.path_uuid("question_id"), clock=call.clock
        )


@api.post(
    "/questions/{question_id}/choices",
    summary="Add a choice",
    body=ChoiceCreate,
    response=AuthorChoiceOut,
    status=201,
    extra_responses={409: "The question already has six choices."},
)
async def create_choice(call: Call[ChoiceCreate, Any]) -> AuthorChoiceOut:
    """A correct choice becomes the question's only correct one."""
    async with call.uow() as session:
        choice = await quizzes.add_choice(
            session=session, actor=call.actor, question_id=call.path_uuid("question_id"), data=call.body
        )
        return AuthorChoiceOut.model_validate(choice)


@api.patch("/choices/{choice_id}", summary="Change a choice", body=ChoiceUpdate, response=AuthorChoiceOut)
async def update_choice(call: Call[ChoiceUpdate, Any]) -> AuthorChoiceOut:
    """Marking a choice correct unmarks the question's other choices."""
    async with call.uow() as session:
        choice = await quizzes.update_choice(
            session=session, actor=call.actor, choice_id=call.path_uuid("choice_id"), data=call.body
        )
        return AuthorChoiceOut.model_validate(choice)


@api.delete("/choices/{choice_id}", summary="Delete a choice", status=204)
async def delete_choice(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await quizzes.delete_choice(
            session=session, actor=call.actor, choice_id=call.path_uuid("choice_id"), clock=call.clock
        )
