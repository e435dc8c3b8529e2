"""What a learner may open and learn from a course: paid content needs an enrollment, the
answer key stays hidden while attempts remain, attempt limits hold under concurrent starts,
and deleted or draft rows elsewhere in a course never block a learner."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import sqlalchemy as sa

from lms_domain.assessments.models import Attempt, Quiz
from lms_domain.courses.models import (
    Asset,
    AssetKind,
    Course,
    CourseAccess,
    Enrollment,
    EnrollmentStatus,
    Prerequisite,
)
from lms_domain.ids import natural_id, new_id
from tests.api.conftest import World
from tests.conftest import T0
from tests.factories import CourseFixture, make_course

V1 = "/api/v1"


async def a_course(world: World, **kw: Any) -> CourseFixture:
    async with world.makers() as session, session.begin():
        return await make_course(session, institution=world.a.institution, **kw)


async def enroll_directly(world: World, fx: CourseFixture) -> None:
    """An enrollment as a purchase leaves it, without going through the shop."""
    async with world.makers() as session, session.begin():
        learner = world.a.learner
        session.add(
            Enrollment(
                id=natural_id("enrollment", learner.id, fx.course.id),
                institution_id=learner.institution_id,
                learner_id=learner.id,
                course_id=fx.course.id,
                enrolled_at=T0,
            )
        )


async def set_enrollment_status(world: World, fx: CourseFixture, status: EnrollmentStatus) -> None:
    async with world.makers() as session, session.begin():
        enrollment = await session.get(Enrollment, natural_id("enrollment", world.a.learner.id, fx.course.id))
        assert enrollment is not None
        enrollment.status = status


def str_keys(mapping: dict[uuid.UUID, uuid.UUID]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}


# --- 1. paid content needs an enrollment -------------------------------------------------------


async def test_paid_lessons_assets_and_questions_need_an_active_enrollment(world: World) -> None:
    fx = await a_course(world, access=CourseAccess.PAID)
    lesson = fx.lessons[0]
    async with world.makers() as session, session.begin():
        session.add(
            Asset(
                id=new_id(),
                institution_id=world.a.institution.id,
                lesson_id=lesson.id,
                kind=AssetKind.PDF,
                url="https://example.org/notes.pdf",
                checksum_sha256="0" * 64,
                size_bytes=10,
            )
        )
    me, teacher = world.a.tokens["learner"], world.a.tokens["instructor"]
    opening = [
        ("GET", f"{V1}/lessons/{lesson.id}"),
        ("GET", f"{V1}/lessons/{lesson.id}/assets"),
        ("GET", f"{V1}/quizzes/{fx.quiz.id}/questions"),
        ("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts"),
    ]

    async def statuses(token: str) -> list[tuple[int, str | None]]:
        out = []
        for method, path in opening:
            status, body = await world.call(method, path, token, **({"json": {}} if method == "POST" else {}))
            out.append((status, body.get("code") if status >= 400 else None))
        return out

    # Not enrolled: the course exists (so 403, not 404), but its content is for buyers.
    assert await statuses(me) == [(403, "enrollment_required")] * 4
    # What is on sale stays visible: the outline, without bodies.
    status, sections = await world.call("GET", f"{V1}/courses/{fx.course.id}/sections", me)
    assert status == 200 and len(sections["items"]) == 1
    status, lessons = await world.call("GET", f"{V1}/sections/{sections['items'][0]['id']}/lessons", me)
    assert status == 200 and len(lessons["items"]) == 2
    assert all("body_en" not in item for item in lessons["items"])
    # Staff are unaffected.
    for method, path in opening[:3]:
        assert (await world.call(method, path, teacher))[0] == 200, path
    # Another school's learner still learns nothing about the course.
    for method, path in opening:
        status, _ = await world.call(method, path, world.b.tokens["learner"], json={})
        assert status == 404, path

    await enroll_directly(world, fx)
    status, body = await world.call("GET", f"{V1}/lessons/{lesson.id}", me)
    assert status == 200 and body["id"] == str(lesson.id)
    status, assets = await world.call("GET", f"{V1}/lessons/{lesson.id}/assets", me)
    assert status == 200 and len(assets["items"]) == 1
    status, questions = await world.call("GET", f"{V1}/quizzes/{fx.quiz.id}/questions", me)
    assert status == 200 and len(questions["items"]) == len(fx.questions)
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 201

    await set_enrollment_status(world, fx, EnrollmentStatus.WITHDRAWN)
    assert await statuses(me) == [(403, "enrollment_required")] * 4
    await set_enrollment_status(world, fx, EnrollmentStatus.COMPLETED)
    assert [s for s, _ in await statuses(me)] == [200, 200, 200, 201]


async def test_free_course_content_stays_open_without_enrollment(world: World) -> None:
    fx = await a_course(world)
    me = world.a.tokens["learner"]
    assert (await world.call("GET", f"{V1}/lessons/{fx.lessons[0].id}", me))[0] == 200
    assert (await world.call("GET", f"{V1}/lessons/{fx.lessons[0].id}/assets", me))[0] == 200
    assert (await world.call("GET", f"{V1}/quizzes/{fx.quiz.id}/questions", me))[0] == 200
    status, body = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 409 and body["code"] == "not_enrolled"  # attempts always need an enrollment


# --- 2. the answer key stays hidden while attempts remain ------------------------------------------


async def test_answers_hidden_until_no_attempts_left(world: World) -> None:
    fx = await a_course(world, max_attempts=2, pass_mark=100)
    me = world.a.tokens["learner"]
    assert (await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)}))[0] == 201

    status, first = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    status, result = await world.call("POST", f"{V1}/attempts/{first['id']}/submit", me, json={})
    assert status == 200 and result["passed"] is False
    assert result["answers_revealed"] is False
    assert all(q["correct_choice_ids"] == [] and q["correct"] is None for q in result["questions"])
    status, fetched = await world.call("GET", f"{V1}/attempts/{first['id']}", me)
    assert fetched["result"]["answers_revealed"] is False
    assert all(q["correct_choice_ids"] == [] and q["correct"] is None for q in fetched["result"]["questions"])

    # The last attempt: a wrong answer, and now there is nothing left to use the key for.
    status, second = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 201 and second["id"] != first["id"]
    status, result = await world.call(
        "POST", f"{V1}/attempts/{second['id']}/submit", me, json={"answers": str_keys(fx.wrong)}
    )
    assert status == 200 and result["passed"] is False and result["answers_revealed"] is True
    graded = {q["question_id"]: q for q in result["questions"]}
    for question in fx.questions:
        assert graded[str(question.id)]["correct_choice_ids"] == [str(fx.correct[question.id])]
        assert graded[str(question.id)]["correct"] is False
    status, fetched = await world.call("GET", f"{V1}/attempts/{first['id']}", me)
    assert fetched["result"]["answers_revealed"] is True


async def test_answers_revealed_once_passed(world: World) -> None:
    fx = await a_course(world, pass_mark=50)  # unlimited attempts
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    failing = {q.id: fx.wrong[q.id] for q in fx.questions}
    status, result = await world.call(
        "POST", f"{V1}/attempts/{attempt['id']}/submit", me, json={"answers": str_keys(failing)}
    )
    assert result["passed"] is False and result["answers_revealed"] is False
    assert all(q["correct_choice_ids"] == [] and q["correct"] is None for q in result["questions"])

    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    status, result = await world.call(
        "POST", f"{V1}/attempts/{attempt['id']}/submit", me, json={"answers": str_keys(fx.correct)}
    )
    assert result["passed"] is True and result["answers_revealed"] is True
    assert all(q["correct"] is True and len(q["correct_choice_ids"]) == 1 for q in result["questions"])


# --- 3. max_attempts holds under concurrent starts -------------------------------------------------


async def test_concurrent_starts_open_one_attempt(world: World) -> None:
    fx = await a_course(world, max_attempts=1)
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    path = f"{V1}/quizzes/{fx.quiz.id}/attempts"
    replies = await asyncio.gather(*(world.call("POST", path, me, json={}) for _ in range(5)))
    started = {body["id"] for status, body in replies if status == 201}
    assert len(started) == 1, replies
    assert all(status in (201, 409) for status, _ in replies), replies
    async with world.makers() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).select_from(Attempt).where(Attempt.quiz_id == fx.quiz.id)
        )
    assert count == 1


async def test_open_attempt_cannot_be_submitted_past_the_limit(world: World) -> None:
    fx = await a_course(world, max_attempts=2)
    me, teacher = world.a.tokens["learner"], world.a.tokens["instructor"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    status, first = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert (await world.call("POST", f"{V1}/attempts/{first['id']}/submit", me, json={}))[0] == 200
    status, second = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 201
    status, _ = await world.call("PATCH", f"{V1}/quizzes/{fx.quiz.id}", teacher, json={"max_attempts": 1})
    assert status == 200
    status, body = await world.call("POST", f"{V1}/attempts/{second['id']}/submit", me, json={})
    assert status == 409 and body["code"] == "max_attempts_reached"
    # The attempt already graded still replays its stored result.
    status, replay = await world.call("POST", f"{V1}/attempts/{first['id']}/submit", me, json={})
    assert status == 200 and replay["id"] == first["id"]


# --- 4. a draft final quiz does not block the certificate --------------------------------------------


async def test_draft_final_quiz_does_not_block_the_certificate(world: World) -> None:
    fx = await a_course(world)
    async with world.makers() as session, session.begin():
        session.add(
            Quiz(
                id=new_id(),
                institution_id=world.a.institution.id,
                course_id=fx.course.id,
                title_en="Final, still being written",
                is_final=True,
                is_published=False,
            )
        )
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    for lesson in fx.lessons:
        assert (await world.call("PUT", f"{V1}/lessons/{lesson.id}/progress", me, json={"percent": 100}))[0] == 200
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    status, result = await world.call(
        "POST", f"{V1}/attempts/{attempt['id']}/submit", me, json={"answers": str_keys(fx.correct)}
    )
    assert status == 200 and result["passed"] is True
    assert result["certificate"] is not None and result["certificate"]["course_id"] == str(fx.course.id)


# --- 5. a deleted required course no longer blocks enrollment ----------------------------------------


async def test_deleted_prerequisite_is_ignored(world: World) -> None:
    basics = await a_course(world, title="Basics")
    advanced = await a_course(world, title="Advanced")
    kept = await a_course(world, title="Kept")
    async with world.makers() as session, session.begin():
        for required in (basics, kept):
            session.add(
                Prerequisite(
                    id=natural_id("prerequisite", advanced.course.id, required.course.id),
                    institution_id=world.a.institution.id,
                    course_id=advanced.course.id,
                    required_course_id=required.course.id,
                )
            )
    me, admin = world.a.tokens["learner"], world.a.tokens["institution_admin"]
    enroll = {"course_id": str(advanced.course.id)}
    status, body = await world.call("POST", f"{V1}/enrollments", me, json=enroll)
    assert status == 409 and sorted(body["missing"]) == sorted([str(basics.course.id), str(kept.course.id)])

    assert (await world.call("DELETE", f"{V1}/courses/{basics.course.id}", admin))[0] == 204
    status, page = await world.call("GET", f"{V1}/courses/{advanced.course.id}/prerequisites", me)
    assert status == 200 and [p["required_course_id"] for p in page["items"]] == [str(kept.course.id)]
    status, body = await world.call("POST", f"{V1}/enrollments", me, json=enroll)
    assert status == 409 and body["missing"] == [str(kept.course.id)]

    assert (await world.call("DELETE", f"{V1}/courses/{kept.course.id}", admin))[0] == 204
    status, _ = await world.call("POST", f"{V1}/enrollments", me, json=enroll)
    assert status == 201


# --- 6. progress reads the course through the shared visibility rule ----------------------------------


async def test_progress_of_an_unpublished_course_needs_an_enrollment(world: World) -> None:
    enrolled, never = await a_course(world), await a_course(world)
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(enrolled.course.id)})
    async with world.makers() as session, session.begin():
        for fx in (enrolled, never):
            course = await session.get(Course, fx.course.id)
            assert course is not None
            course.is_published = False
    status, report = await world.call("GET", f"{V1}/courses/{enrolled.course.id}/progress", me)
    assert status == 200 and report["enrollment_status"] == "active"
    assert (await world.call("GET", f"{V1}/courses/{never.course.id}/progress", me))[0] == 404
    status, _ = await world.call("GET", f"{V1}/courses/{enrolled.course.id}/progress", world.b.tokens["learner"])
    assert status == 404
