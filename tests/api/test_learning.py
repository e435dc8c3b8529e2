"""Learning over HTTP: enrollments, lesson progress, attempts, certificates, verification;
who may act for whom, and what another school (or another learner) cannot see or change."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from lms_domain.assessments.models import Certificate
from lms_domain.clock import FixedClock
from lms_domain.courses.models import CourseAccess, Prerequisite
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.tenancy.models import Learner
from tests.api.conftest import World
from tests.conftest import T0
from tests.factories import CourseFixture, make_course, make_learner

V1 = "/api/v1"


async def a_course(world: World, **kw: Any) -> CourseFixture:
    async with world.makers() as session, session.begin():
        return await make_course(session, institution=world.a.institution, **kw)


async def another_learner(world: World, name: str = "Achieng Two", language: Language = Language.EN) -> Learner:
    async with world.makers() as session, session.begin():
        return await make_learner(session, institution=world.a.institution, name=name, pin=None, language=language)


def keys_in(value: Any) -> set[str]:
    """Every object key anywhere in a JSON document."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_in(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_in(v)}
    return set()


def str_keys(mapping: dict[uuid.UUID, uuid.UUID]) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}


async def finish_course(world: World, token: str, fx: CourseFixture, learner_id: uuid.UUID | None = None) -> Any:
    """Enroll, complete every lesson and pass the final quiz; returns the graded result."""
    who = {"learner_id": str(learner_id)} if learner_id else {}
    status, _ = await world.call("POST", f"{V1}/enrollments", token, json={"course_id": str(fx.course.id), **who})
    assert status == 201
    for lesson in fx.lessons:
        status, _ = await world.call("PUT", f"{V1}/lessons/{lesson.id}/progress", token, json={"percent": 100, **who})
        assert status == 200
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", token, json=who)
    assert status == 201
    status, result = await world.call(
        "POST", f"{V1}/attempts/{attempt['id']}/submit", token, json={"answers": str_keys(fx.correct)}
    )
    assert status == 200 and result["passed"] is True
    return result


# --- the learner's journey -----------------------------------------------------------------


async def test_learner_journey_from_enrollment_to_verified_certificate(world: World, api_clock: FixedClock) -> None:
    fx = await a_course(world, lessons=2, questions=4)
    me = world.a.tokens["learner"]

    status, enrollment = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    assert status == 201
    assert enrollment["status"] == "active" and enrollment["learner_id"] == str(world.a.learner.id)
    status, page = await world.call("GET", f"{V1}/enrollments", me)
    assert [e["id"] for e in page["items"]] == [enrollment["id"]]

    # Half of the first lesson, seen offline an hour ago, then both lessons in full.
    seen = (T0 - timedelta(hours=1)).isoformat()
    status, progress = await world.call(
        "PUT", f"{V1}/lessons/{fx.lessons[0].id}/progress", me, json={"percent": 50, "observed_at": seen}
    )
    assert status == 200 and progress["percent"] == 50 and progress["completed_at"] is None
    status, report = await world.call("GET", f"{V1}/courses/{fx.course.id}/progress", me)
    assert status == 200
    assert (report["lessons_total"], report["lessons_completed"], report["percent"]) == (2, 0, 0)
    assert [lesson["percent"] for lesson in report["lessons"]] == [50, 0]
    for lesson in fx.lessons:
        status, progress = await world.call("PUT", f"{V1}/lessons/{lesson.id}/progress", me, json={"percent": 100})
        assert status == 200 and progress["percent"] == 100
    status, report = await world.call("GET", f"{V1}/courses/{fx.course.id}/progress", me)
    assert (report["lessons_completed"], report["percent"], report["enrollment_status"]) == (2, 100, "active")
    assert report["certificate_code"] is None  # the final quiz is still to pass

    # The quiz: questions come without their answers, before and while answering.
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 201 and attempt["status"] == "in_progress" and attempt["result"] is None
    assert [q["id"] for q in attempt["questions"]] == [str(q.id) for q in fx.questions]
    assert all(len(q["choices"]) == 3 for q in attempt["questions"])
    first, *rest = fx.questions
    status, answer = await world.call(
        "PUT", f"{V1}/attempts/{attempt['id']}/answers/{first.id}", me, json={"choice_id": str(fx.wrong[first.id])}
    )
    assert status == 200 and answer["choice_id"] == str(fx.wrong[first.id])
    status, answer = await world.call(
        "PUT", f"{V1}/attempts/{attempt['id']}/answers/{first.id}", me, json={"choice_id": str(fx.correct[first.id])}
    )
    assert status == 200 and answer["choice_id"] == str(fx.correct[first.id])
    status, resumed = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert resumed["id"] == attempt["id"]
    assert [(a["question_id"], a["choice_id"]) for a in resumed["answers"]] == [
        (str(first.id), str(fx.correct[first.id]))
    ]
    status, fetched = await world.call("GET", f"{V1}/attempts/{attempt['id']}", me)
    assert status == 200 and fetched["result"] is None
    for pre_submit in (attempt, answer, resumed, fetched):
        assert not keys_in(pre_submit) & {"is_correct", "correct", "correct_choice_ids"}

    # Submit with the rest of the answers, one of them wrong.
    last_answers = {q.id: fx.correct[q.id] for q in rest[:-1]} | {rest[-1].id: fx.wrong[rest[-1].id]}
    status, result = await world.call(
        "POST", f"{V1}/attempts/{attempt['id']}/submit", me, json={"answers": str_keys(last_answers)}
    )
    assert status == 200, result
    assert (result["score_points"], result["max_points"], result["percent"], result["passed"]) == (3, 4, 75, True)
    graded = {q["question_id"]: q for q in result["questions"]}
    assert graded[str(rest[-1].id)]["correct"] is False
    assert graded[str(rest[-1].id)]["correct_choice_ids"] == [str(fx.correct[rest[-1].id])]
    assert graded[str(first.id)]["correct"] is True
    certificate = result["certificate"]
    assert certificate is not None and certificate["learner_id"] == str(world.a.learner.id)
    assert certificate["score_percent"] == 75
    # Submitting again replays the stored result.
    status, again = await world.call("POST", f"{V1}/attempts/{attempt['id']}/submit", me, json={})
    assert status == 200 and again == result
    status, fetched = await world.call("GET", f"{V1}/attempts/{attempt['id']}", me)
    assert fetched["status"] == "submitted" and fetched["result"] == result

    status, report = await world.call("GET", f"{V1}/courses/{fx.course.id}/progress", me)
    assert report["enrollment_status"] == "completed" and report["certificate_code"] == certificate["code"]
    status, attempts = await world.call("GET", f"{V1}/attempts?quiz_id={fx.quiz.id}", me)
    assert [(a["id"], a["passed"]) for a in attempts["items"]] == [(attempt["id"], True)]

    status, page = await world.call("GET", f"{V1}/certificates", me)
    assert [c["id"] for c in page["items"]] == [certificate["id"]]
    status, got = await world.call("GET", f"{V1}/certificates/{certificate['id']}", me)
    assert status == 200 and got == certificate
    response = await world.client.get(f"{V1}/certificates/{certificate['id']}/pdf", headers=world.auth(me))
    assert response.status == 200 and response.content_type == "application/pdf"
    assert (await response.read()).startswith(b"%PDF")
    assert response.headers["Content-Disposition"] == (
        f'attachment; filename="somo-certificate-{certificate["code"]}.pdf"'
    )

    # Anyone can verify the code, typed the way people type it.
    code = certificate["code"]
    assert certificate["verify_url"].endswith(f"/verify/{code.replace('-', '')}")
    typed = code.lower().replace("0", "o")
    status, verified = await world.call("GET", f"{V1}/verify/{typed}")
    assert status == 200
    assert verified == {
        "valid": True,
        "code": code,
        "learner_name": "Learner Alpha School",
        "course_title": "Form 1 Biology",
        "institution_name": "Alpha School",
        "issued_at": T0.isoformat().replace("+00:00", "Z"),
        "revoked": False,
    }
    response = await world.client.get(f"/verify/{typed}")
    page_html = await response.text()
    assert response.status == 200 and response.content_type == "text/html"
    for text in ("VALID", "HALALI", "Learner Alpha School", "Form 1 Biology", "Alpha School", code):
        assert text in page_html
    assert "27 November 2026, 10:00 EAT" in page_html and "27 Novemba 2026" in page_html  # Nairobi time

    # A completed course cannot be withdrawn from.
    status, body = await world.call("DELETE", f"{V1}/enrollments/{enrollment['id']}", me)
    assert status == 409 and body["code"] == "enrollment_completed"


async def test_staff_act_for_a_learner_and_the_page_escapes_names(world: World) -> None:
    fx = await a_course(world)
    pupil = await another_learner(world, name="<script>alert('x')</script> Ng'ang'a & Co", language=Language.SW)
    teacher = world.a.tokens["instructor"]
    result = await finish_course(world, teacher, fx, learner_id=pupil.id)
    assert result["learner_id"] == str(pupil.id)

    status, body = await world.call("POST", f"{V1}/enrollments", teacher, json={"course_id": str(fx.course.id)})
    assert status == 403 and body["code"] == "learner_id_required"
    admin = world.a.tokens["institution_admin"]
    status, report = await world.call("GET", f"{V1}/courses/{fx.course.id}/progress?learner_id={pupil.id}", admin)
    assert status == 200 and report["enrollment_status"] == "completed" and report["learner_id"] == str(pupil.id)
    status, page = await world.call("GET", f"{V1}/enrollments?learner_id={pupil.id}", admin)
    assert [e["learner_id"] for e in page["items"]] == [str(pupil.id)]
    status, page = await world.call("GET", f"{V1}/certificates", admin)
    assert [c["learner_id"] for c in page["items"]] == [str(pupil.id)]
    # Issued in the learner's language.
    assert page["items"][0]["course_title"] == "Form 1 Biology (sw)"

    response = await world.client.get(f"/verify/{result['certificate']['code']}")
    text = await response.text()
    assert response.status == 200
    assert (
        "<script>" not in text
        and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Ng&#x27;ang&#x27;a &amp; Co" in text
    )

    # The learner's own login does not see another learner's work, even in the same school.
    me = world.a.tokens["learner"]
    status, page = await world.call("GET", f"{V1}/certificates", me)
    assert page["items"] == []


async def test_a_learner_cannot_touch_another_learners_work_in_the_same_school(world: World) -> None:
    fx = await a_course(world)
    other = await another_learner(world)
    teacher, me = world.a.tokens["instructor"], world.a.tokens["learner"]
    who = {"learner_id": str(other.id)}
    status, enrollment = await world.call(
        "POST", f"{V1}/enrollments", teacher, json={"course_id": str(fx.course.id), **who}
    )
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", teacher, json=who)
    assert status == 201
    question = fx.questions[0]
    attempt_path = f"{V1}/attempts/{attempt['id']}"
    assert (await world.call("GET", attempt_path, me))[0] == 404
    answer = {"choice_id": str(fx.correct[question.id])}
    assert (await world.call("PUT", f"{attempt_path}/answers/{question.id}", me, json=answer))[0] == 404
    assert (await world.call("POST", f"{attempt_path}/submit", me, json={}))[0] == 404
    assert (await world.call("GET", f"{V1}/enrollments/{enrollment['id']}", me))[0] == 404
    assert (await world.call("DELETE", f"{V1}/enrollments/{enrollment['id']}", me))[0] == 404
    assert (await world.call("GET", f"{V1}/attempts?learner_id={other.id}", me))[1]["items"] == []
    assert (await world.call("GET", f"{V1}/enrollments?learner_id={other.id}", me))[1]["items"] == []
    # Naming another learner in a body or query is refused the same way.
    status, _ = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id), **who})
    assert status == 404
    lesson = fx.lessons[0]
    assert (await world.call("PUT", f"{V1}/lessons/{lesson.id}/progress", me, json={"percent": 10, **who}))[0] == 404
    assert (await world.call("GET", f"{V1}/courses/{fx.course.id}/progress?learner_id={other.id}", me))[0] == 404
    assert (await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json=who))[0] == 404
    # Untouched: the staff member still sees an open, unanswered attempt.
    status, still = await world.call("GET", attempt_path, teacher)
    assert status == 200 and still["status"] == "in_progress" and still["answers"] == []


# --- tenancy -------------------------------------------------------------------------------


async def test_another_school_cannot_see_or_change_anything(world: World) -> None:
    fx = await a_course(world)
    me = world.a.tokens["learner"]
    result = await finish_course(world, me, fx)
    certificate = result["certificate"]
    status, open_attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 201 and open_attempt["number"] == 2
    status, page = await world.call("GET", f"{V1}/enrollments", me)
    enrollment_id = page["items"][0]["id"]
    a_learner = str(world.a.learner.id)
    b_learner = str(world.b.learner.id)
    question = fx.questions[0]
    attempt_path = f"{V1}/attempts/{open_attempt['id']}"

    for role in ("institution_admin", "instructor", "learner"):
        token = world.b.tokens[role]
        # Acting for school a's learner, or for their own on school a's course, quiz or lesson.
        targets = [a_learner, None] if role == "learner" else [a_learner, b_learner]
        for learner_id in targets:
            who = {"learner_id": learner_id} if learner_id else {}
            body = {"course_id": str(fx.course.id), **who}
            assert (await world.call("POST", f"{V1}/enrollments", token, json=body))[0] == 404
            progress = {"percent": 100, **who}
            lesson_path = f"{V1}/lessons/{fx.lessons[0].id}/progress"
            assert (await world.call("PUT", lesson_path, token, json=progress))[0] == 404
            query = f"?learner_id={learner_id}" if learner_id else ""
            assert (await world.call("GET", f"{V1}/courses/{fx.course.id}/progress{query}", token))[0] == 404
            assert (await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", token, json=who))[0] == 404
        assert (await world.call("GET", f"{V1}/enrollments", token))[1]["items"] == []
        assert (await world.call("GET", f"{V1}/enrollments?learner_id={a_learner}", token))[1]["items"] == []
        assert (await world.call("GET", f"{V1}/enrollments/{enrollment_id}", token))[0] == 404
        assert (await world.call("DELETE", f"{V1}/enrollments/{enrollment_id}", token))[0] == 404
        assert (await world.call("GET", attempt_path, token))[0] == 404
        answer = {"choice_id": str(fx.correct[question.id])}
        assert (await world.call("PUT", f"{attempt_path}/answers/{question.id}", token, json=answer))[0] == 404
        assert (await world.call("POST", f"{attempt_path}/submit", token, json={}))[0] == 404
        assert (await world.call("GET", f"{V1}/attempts", token))[1]["items"] == []
        assert (await world.call("GET", f"{V1}/attempts?quiz_id={fx.quiz.id}", token))[1]["items"] == []
        assert (await world.call("GET", f"{V1}/certificates", token))[1]["items"] == []
        assert (await world.call("GET", f"{V1}/certificates/{certificate['id']}", token))[0] == 404
        assert (await world.call("GET", f"{V1}/certificates/{certificate['id']}/pdf", token))[0] == 404

    # Nothing changed for school a.
    status, still = await world.call("GET", attempt_path, me)
    assert still["status"] == "in_progress" and still["answers"] == []
    status, enrollment = await world.call("GET", f"{V1}/enrollments/{enrollment_id}", me)
    assert enrollment["status"] == "completed"


async def test_platform_admins_read_but_do_not_act(world: World) -> None:
    fx = await a_course(world)
    result = await finish_course(world, world.a.tokens["learner"], fx)
    root = world.platform_token
    status, page = await world.call("GET", f"{V1}/certificates", root)
    assert [c["id"] for c in page["items"]] == [result["certificate"]["id"]]
    assert (await world.call("GET", f"{V1}/attempts/{result['id']}", root))[0] == 200
    report_path = f"{V1}/courses/{fx.course.id}/progress?learner_id={world.a.learner.id}"
    assert (await world.call("GET", report_path, root))[1]["percent"] == 100
    body = {"course_id": str(fx.course.id), "learner_id": str(world.a.learner.id)}
    status, problem = await world.call("POST", f"{V1}/enrollments", root, json=body)
    assert status == 403 and problem["code"] == "permission_denied"
    status, _ = await world.call("POST", f"{V1}/attempts/{result['id']}/submit", root, json={})
    assert status == 403
    assert (await world.call("GET", f"{V1}/enrollments"))[0] == 401


# --- enrollment rules ------------------------------------------------------------------------


async def test_enrollment_idempotency_key_replays_and_refuses_a_different_body(world: World) -> None:
    fx = await a_course(world)
    other = await a_course(world, title="Form 2 Physics")
    headers = {**world.auth(world.a.tokens["learner"]), "Idempotency-Key": "enroll-1"}
    path = f"{V1}/enrollments"
    first = await world.client.post(path, json={"course_id": str(fx.course.id)}, headers=headers)
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    replay = await world.client.post(path, json={"course_id": str(fx.course.id)}, headers=headers)
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == await first.json()
    reused = await world.client.post(path, json={"course_id": str(other.course.id)}, headers=headers)
    assert reused.status == 409 and (await reused.json())["code"] == "idempotency_key_reused"
    status, page = await world.call("GET", path, world.a.tokens["learner"])
    assert [e["course_id"] for e in page["items"]] == [str(fx.course.id)]


async def test_enrollment_is_refused_without_prerequisites_or_purchase(world: World) -> None:
    basics = await a_course(world, title="Basics")
    advanced = await a_course(world, title="Advanced")
    paid = await a_course(world, access=CourseAccess.PAID)
    async with world.makers() as session, session.begin():
        session.add(
            Prerequisite(
                id=new_id(),
                institution_id=world.a.institution.id,
                course_id=advanced.course.id,
                required_course_id=basics.course.id,
            )
        )
    me = world.a.tokens["learner"]
    status, body = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(advanced.course.id)})
    assert status == 409 and body["code"] == "prerequisites_missing" and body["missing"] == [str(basics.course.id)]
    status, body = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(paid.course.id)})
    assert status == 409 and body["code"] == "entitlement_required"
    status, body = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(uuid.uuid4())})
    assert status == 404
    await finish_course(world, me, basics)
    status, _ = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(advanced.course.id)})
    assert status == 201


async def test_withdrawing_stops_progress_until_enrolling_again(world: World) -> None:
    fx = await a_course(world)
    me, teacher = world.a.tokens["learner"], world.a.tokens["instructor"]
    status, enrollment = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    lesson_path = f"{V1}/lessons/{fx.lessons[0].id}/progress"
    assert (await world.call("PUT", lesson_path, me, json={"percent": 40}))[0] == 200
    status, withdrawn = await world.call("DELETE", f"{V1}/enrollments/{enrollment['id']}", teacher)
    assert status == 200 and withdrawn["status"] == "withdrawn"
    status, body = await world.call("PUT", lesson_path, me, json={"percent": 60})
    assert status == 409 and body["code"] == "not_enrolled"
    status, body = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 409 and body["code"] == "not_enrolled"
    status, page = await world.call("GET", f"{V1}/enrollments?status=withdrawn", me)
    assert [e["id"] for e in page["items"]] == [enrollment["id"]]
    status, again = await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    assert status == 201 and again["id"] == enrollment["id"] and again["status"] == "active"
    status, report = await world.call("GET", f"{V1}/courses/{fx.course.id}/progress", me)
    assert report["lessons"][0]["percent"] == 40  # kept across the withdrawal


# --- progress and attempts rules ------------------------------------------------------------


async def test_progress_input_is_validated_and_untrustworthy_clocks_count_as_now(world: World) -> None:
    fx = await a_course(world)
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    path = f"{V1}/lessons/{fx.lessons[0].id}/progress"
    for bad in (
        {"percent": 101},
        {"percent": -1},
        {"percent": 10, "observed_at": "2026-11-27T10:00:00"},  # naive
        {"percent": 10, "surprise": True},
    ):
        status, body = await world.call("PUT", path, me, json=bad)
        assert status == 422 and body["code"] == "validation_error", bad
    now = T0.isoformat().replace("+00:00", "Z")
    # A reset phone clock, one running ahead, one beyond what a datetime holds: all "now".
    for observed_at in ("1970-01-01T00:00:00Z", (T0 + timedelta(days=3)).isoformat(), "9999-12-31T23:59:59-23:59"):
        status, progress = await world.call("PUT", path, me, json={"percent": 30, "observed_at": observed_at})
        assert status == 200 and progress["first_seen_at"] == now and progress["last_seen_at"] == now, observed_at
    earlier = T0 - timedelta(hours=5)
    status, progress = await world.call("PUT", path, me, json={"percent": 10, "observed_at": earlier.isoformat()})
    assert progress["first_seen_at"] == earlier.isoformat().replace("+00:00", "Z")
    assert progress["percent"] == 30  # never falls
    assert (await world.call("PUT", f"{V1}/lessons/{uuid.uuid4()}/progress", me, json={"percent": 5}))[0] == 404
    assert (await world.call("PUT", f"{V1}/lessons/nope/progress", me, json={"percent": 5}))[0] == 404


async def test_attempt_limits_and_answer_checks(world: World) -> None:
    fx = await a_course(world, max_attempts=1)
    me = world.a.tokens["learner"]
    await world.call("POST", f"{V1}/enrollments", me, json={"course_id": str(fx.course.id)})
    status, attempt = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    path = f"{V1}/attempts/{attempt['id']}"
    question, other_question = fx.questions[0], fx.questions[1]
    wrong_question = {"choice_id": str(fx.correct[other_question.id])}
    status, body = await world.call("PUT", f"{path}/answers/{question.id}", me, json=wrong_question)
    assert status == 422 and body["code"] == "choice_not_in_question"
    status, body = await world.call("PUT", f"{path}/answers/{uuid.uuid4()}", me, json=wrong_question)
    assert status == 422 and body["code"] == "question_not_in_quiz"
    status, result = await world.call("POST", f"{path}/submit", me, json={"answers": str_keys(fx.wrong)})
    assert status == 200 and result["passed"] is False and result["certificate"] is None
    status, body = await world.call("PUT", f"{path}/answers/{question.id}", me, json=wrong_question)
    assert status == 409 and body["code"] == "attempt_closed"
    status, body = await world.call("POST", f"{V1}/quizzes/{fx.quiz.id}/attempts", me, json={})
    assert status == 409 and body["code"] == "max_attempts_reached"
    status, page = await world.call("GET", f"{V1}/attempts?status=submitted", me)
    assert [a["id"] for a in page["items"]] == [attempt["id"]]


async def test_revoked_and_unknown_codes(world: World) -> None:
    fx = await a_course(world)
    result = await finish_course(world, world.a.tokens["learner"], fx)
    code = result["certificate"]["code"]
    async with world.makers() as session, session.begin():
        await session.execute(
            sa.update(Certificate).where(Certificate.id == uuid.UUID(result["certificate"]["id"])).values(revoked_at=T0)
        )
    status, verified = await world.call("GET", f"{V1}/verify/{code}")
    assert status == 200 and verified["valid"] is False and verified["revoked"] is True
    response = await world.client.get(f"/verify/{code}")
    text = await response.text()
    assert response.status == 200 and "REVOKED" in text and "KIMEFUTWA" in text and ">VALID" not in text
    status, body = await world.call("GET", f"{V1}/verify/ZZZZZ-ZZZZZ")
    assert status == 404 and body["code"] == "certificate_not_found"
    response = await world.client.get("/verify/%3Cb%3Enope%3C%2Fb%3E")
    text = await response.text()
    assert response.status == 404 and response.content_type == "text/html"
    assert "&lt;b&gt;nope" in text and "<b>nope" not in text
