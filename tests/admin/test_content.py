"""The course editor: courses, sections, lessons, files, tags, prerequisites, quizzes,
questions and choices, each change checked in the database and the audit log; bad forms
change nothing; another school sees none of it; the USSD preview is the real screen."""

from __future__ import annotations

import csv
import html as htmllib
import io
import re
import uuid
from typing import Any

import sqlalchemy as sa

from lms_domain.assessments.models import Question, QuestionChoice, Quiz
from lms_domain.courses.models import Asset, Course, CourseTag, Lesson, Prerequisite, Section, Tag
from lms_domain.courses.service import enroll
from lms_domain.i18n import Language
from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import Institution
from server.admin.pages.content import ussd_preview
from tests.admin.conftest import Console
from tests.factories import make_course
from ussd.layout import HARD_CAP, SCREEN_BUDGET

COURSE = {
    "slug": "form-2-maths",
    "title_en": "Form 2 Mathematics",
    "title_sw": "Hisabati Kidato cha 2",
    "summary_en": "Algebra and geometry",
    "summary_sw": "Aljebra na jiometri",
    "access": "free",
    "is_published": "on",
}


async def _scalar(console: Console, stmt: Any) -> Any:
    async with console.makers() as session:
        return await session.scalar(stmt)


async def _all(console: Console, stmt: Any) -> list[Any]:
    async with console.makers() as session:
        return list(await session.scalars(stmt))


async def _audits(console: Console, action: str) -> list[AuditLog]:
    return await _all(console, sa.select(AuditLog).where(AuditLog.action == action))


def _location_id(response: Any) -> uuid.UUID:
    found = re.search(r"/([0-9a-f-]{36})$", response.headers["Location"])
    assert found, response.headers["Location"]
    return uuid.UUID(found.group(1))


async def _new_course(console: Console, username: str, **changes: str) -> uuid.UUID:
    client = await console.as_user(username)
    response = await client.post("/admin/courses", {**COURSE, **changes})
    assert response.status == 303, await response.text()
    return _location_id(response)


async def _school_course(console: Console, institution: Institution, title: str, **kw: Any) -> Any:
    async with console.makers() as session, session.begin():
        school = await session.get(Institution, institution.id)
        return await make_course(session, institution=school, title=title, **kw)


# Courses


async def test_an_instructor_creates_edits_and_deletes_a_course(console: Console) -> None:
    client = await console.as_user(console.a.instructor)
    status, html = await client.get("/admin/courses/new")
    assert status == 200 and 'name="title_sw"' in html and 'name="title_en"' in html
    assert 'name="institution_id"' not in html  # only platform admins choose the owner

    response = await client.post("/admin/courses", COURSE)
    assert response.status == 303
    course_id = _location_id(response)
    course = await _scalar(console, sa.select(Course).where(Course.id == course_id))
    assert course.institution_id == console.a.institution.id
    assert (course.title_en, course.title_sw, course.summary_sw) == (
        "Form 2 Mathematics",
        "Hisabati Kidato cha 2",
        "Aljebra na jiometri",
    )
    assert course.is_published
    [created] = await _audits(console, "course.create")
    assert created.target_id == str(course_id) and created.institution_id == console.a.institution.id
    assert created.after is not None and created.after["title_sw"] == "Hisabati Kidato cha 2"

    status, html = await client.get(f"/admin/courses/{course_id}")
    assert status == 200 and "Hisabati Kidato cha 2" in html and "Form 2 Mathematics" in html

    edit = {**COURSE, "title_sw": "Hisabati ya Kidato cha Pili", "is_published": ""}
    del edit["is_published"]
    response = await client.post(f"/admin/courses/{course_id}", edit)
    assert response.status == 303
    course = await _scalar(console, sa.select(Course).where(Course.id == course_id))
    assert course.title_sw == "Hisabati ya Kidato cha Pili" and not course.is_published
    [updated] = await _audits(console, "course.update")
    assert updated.before is not None and updated.after is not None
    assert updated.before["is_published"] is True and updated.after["is_published"] is False

    response = await client.post(f"/admin/courses/{course_id}/delete")
    assert response.status == 303 and response.headers["Location"] == "/admin/courses"
    course = await _scalar(console, sa.select(Course).where(Course.id == course_id))
    assert course.deleted_at is not None
    assert len(await _audits(console, "course.delete")) == 1
    assert (await client.get(f"/admin/courses/{course_id}"))[0] == 404


async def test_a_bad_course_form_shows_field_errors_and_writes_nothing(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post("/admin/courses", {**COURSE, "title_en": "", "slug": "Not A Slug!"})
    assert response.status == 422
    html = await response.text()
    assert 'data-field="title_en"' in html and 'data-field="slug"' in html
    assert 'value="Hisabati Kidato cha 2"' in html  # what was typed is kept
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Course)) == 0
    assert (
        await _scalar(
            console, sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action.not_like("auth.%"))
        )
        == 0
    )

    course_id = await _new_course(console, console.a.admin)
    response = await client.post(f"/admin/courses/{course_id}", {**COURSE, "title_en": ""})
    assert response.status == 422 and 'data-field="title_en"' in await response.text()
    course = await _scalar(console, sa.select(Course).where(Course.id == course_id))
    assert course.title_en == "Form 2 Mathematics"
    assert await _audits(console, "course.update") == []
    # A slug another course of the school has is refused by the domain (409), nothing written.
    await _new_course(console, console.a.admin, slug="other")
    response = await client.post(f"/admin/courses/{course_id}", {**COURSE, "slug": "other"})
    assert response.status == 409
    assert (await _scalar(console, sa.select(Course).where(Course.id == course_id))).slug == "form-2-maths"


async def test_the_list_searches_both_languages_filters_and_exports(console: Console) -> None:
    await _new_course(console, console.a.admin)
    await _new_course(
        console, console.a.admin, slug="draft-biology", title_en="Biology", title_sw="Biolojia", is_published=""
    )
    await _new_course(console, console.b.admin, slug="beta-only", title_en="Beta Secret Course", title_sw="Siri")
    client = await console.as_user(console.a.instructor)

    status, html = await client.get("/admin/courses")
    assert status == 200 and "Form 2 Mathematics" in html and "Biology" in html
    assert "Beta Secret Course" not in html
    status, html = await client.get("/admin/courses?q=hisabati")  # the Swahili title
    assert "Form 2 Mathematics" in html and "Biology" not in html
    status, html = await client.get("/admin/courses?published=no")
    assert "Biology" in html and "Form 2 Mathematics" not in html
    status, html = await client.get("/admin/courses?q=secret")
    assert "Beta Secret Course" not in html and "Nothing found." in html

    response = await client.client.get("/admin/courses?format=csv")
    assert response.status == 200 and response.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert {r["title_en"] for r in rows} == {"Form 2 Mathematics", "Biology"}
    assert {r["institution_id"] for r in rows} == {str(console.a.institution.id)}
    response = await client.client.get("/admin/courses?format=csv&q=biolojia")
    rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
    assert [r["title_sw"] for r in rows] == ["Biolojia"]

    # Paging: one page per 50; a bad cursor is a form error, not a crash.
    assert (await client.get("/admin/courses?cursor=nonsense"))[0] == 422


async def test_platform_admins_own_the_catalogue_and_schools_cannot_change_it(console: Console) -> None:
    root = await console.as_user(console.root)
    status, html = await root.get("/admin/courses/new")
    assert 'name="institution_id"' in html and "Alpha School" in html
    catalogue_id = await _new_course(console, console.root, slug="shared", title_en="Shared Course")
    owned_id = await _new_course(
        console, console.root, slug="given", title_en="Given Course", institution_id=str(console.b.institution.id)
    )
    assert (await _scalar(console, sa.select(Course).where(Course.id == catalogue_id))).institution_id is None
    owned = await _scalar(console, sa.select(Course).where(Course.id == owned_id))
    assert owned.institution_id == console.b.institution.id

    instructor = await console.as_user(console.a.instructor)
    status, html = await instructor.get(f"/admin/courses/{catalogue_id}")
    assert status == 200 and "only platform admins can change it" in html and 'id="course-form"' not in html
    response = await instructor.post(f"/admin/courses/{catalogue_id}", {**COURSE, "title_en": "Hijacked"})
    assert response.status == 403
    assert (await _scalar(console, sa.select(Course).where(Course.id == catalogue_id))).title_en == "Shared Course"


# Structure


async def test_sections_lessons_files_tags_and_prerequisites(console: Console) -> None:
    course_id = await _new_course(console, console.a.instructor)
    other_id = await _new_course(console, console.a.instructor, slug="basics", title_en="Basics")
    client = await console.as_user(console.a.instructor)

    for title, position in (("Algebra", "0"), ("Geometry", "1")):
        response = await client.post(
            f"/admin/courses/{course_id}/sections", {"title_en": title, "title_sw": title + " sw", "position": position}
        )
        assert response.status == 303
    sections = await _all(console, sa.select(Section).where(Section.course_id == course_id).order_by(Section.position))
    assert [s.title_en for s in sections] == ["Algebra", "Geometry"]
    assert all(s.institution_id == console.a.institution.id for s in sections)
    algebra, geometry = sections

    response = await client.post(
        f"/admin/courses/{course_id}/sections/{algebra.id}/lessons",
        {"title_en": "Equations", "title_sw": "Milinganyo", "position": "0", "duration_minutes": "15"},
    )
    assert response.status == 303
    lesson_id = _location_id(response)
    lesson = await _scalar(console, sa.select(Lesson).where(Lesson.id == lesson_id))
    assert (lesson.section_id, lesson.title_sw, lesson.duration_minutes) == (algebra.id, "Milinganyo", 15)

    # Move it to the other section, with its Kiswahili body.
    response = await client.post(
        f"/admin/courses/{course_id}/lessons/{lesson_id}",
        {
            "section_id": str(geometry.id),
            "title_en": "Equations",
            "title_sw": "Milinganyo",
            "body_en": "Solve for x.",
            "body_sw": "Tafuta x.",
            "position": "3",
            "duration_minutes": "20",
        },
    )
    assert response.status == 303
    lesson = await _scalar(console, sa.select(Lesson).where(Lesson.id == lesson_id))
    assert (lesson.section_id, lesson.position, lesson.body_sw) == (geometry.id, 3, "Tafuta x.")

    # A section with a lesson cannot be deleted; an empty one can.
    response = await client.post(f"/admin/courses/{course_id}/sections/{geometry.id}/delete")
    assert response.status == 409
    response = await client.post(f"/admin/courses/{course_id}/sections/{algebra.id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(Section).where(Section.id == algebra.id))).deleted_at is not None

    # Files: a bad checksum changes nothing; a good one is recorded, then removed.
    asset = {
        "kind": "video",
        "title": "Intro",
        "language": "sw",
        "file_path": "maths/intro.mp4",
        "mime_type": "video/mp4",
        "checksum_sha256": "A" * 64,
        "size_bytes": "1024",
    }
    response = await client.post(
        f"/admin/courses/{course_id}/lessons/{lesson_id}/assets", {**asset, "checksum_sha256": "nope"}
    )
    assert response.status == 422
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Asset)) == 0
    response = await client.post(f"/admin/courses/{course_id}/lessons/{lesson_id}/assets", asset)
    assert response.status == 303
    stored = await _scalar(console, sa.select(Asset).where(Asset.lesson_id == lesson_id))
    assert stored.checksum_sha256 == "a" * 64 and stored.institution_id == console.a.institution.id
    status, html = await client.get(f"/admin/courses/{course_id}/lessons/{lesson_id}")
    assert status == 200 and "maths/intro.mp4" in html and "Tafuta x." in html
    response = await client.post(f"/admin/courses/{course_id}/lessons/{lesson_id}/assets/{stored.id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(Asset).where(Asset.id == stored.id))).deleted_at is not None

    # Tags: create one and attach it, then detach it.
    response = await client.post(
        f"/admin/courses/{course_id}/tags", {"slug": "algebra", "name_en": "Algebra", "name_sw": "Aljebra"}
    )
    assert response.status == 303
    tag = await _scalar(console, sa.select(Tag).where(Tag.slug == "algebra"))
    assert tag.institution_id == console.a.institution.id
    link = await _scalar(console, sa.select(CourseTag).where(CourseTag.course_id == course_id))
    assert link.tag_id == tag.id and link.deleted_at is None
    status, html = await client.get("/admin/courses?tag=algebra")
    assert "Form 2 Mathematics" in html and "Basics" not in html
    response = await client.post(f"/admin/courses/{course_id}/tags/{tag.id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(CourseTag).where(CourseTag.id == link.id))).deleted_at is not None

    # Prerequisites, and the cycle the domain refuses.
    response = await client.post(f"/admin/courses/{course_id}/prerequisites", {"required_course_id": str(other_id)})
    assert response.status == 303
    prerequisite = await _scalar(console, sa.select(Prerequisite).where(Prerequisite.course_id == course_id))
    assert prerequisite.required_course_id == other_id and prerequisite.deleted_at is None
    response = await client.post(f"/admin/courses/{other_id}/prerequisites", {"required_course_id": str(course_id)})
    assert response.status == 409
    response = await client.post(f"/admin/courses/{course_id}/prerequisites/{other_id}/delete")
    assert response.status == 303

    # Lesson deletion, and an audit entry for every change made above.
    response = await client.post(f"/admin/courses/{course_id}/lessons/{lesson_id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(Lesson).where(Lesson.id == lesson_id))).deleted_at is not None
    actions = {a.action for a in await _all(console, sa.select(AuditLog))}
    assert {
        "section.create",
        "section.delete",
        "lesson.create",
        "lesson.update",
        "lesson.delete",
        "asset.create",
        "asset.delete",
        "tag.create",
        "course.tag",
        "course.untag",
        "course.require",
        "course.unrequire",
    } <= actions


# Quizzes


def _question_form(**changes: str) -> dict[str, str]:
    form = {
        "prompt_en": "What is 2 + 2?",
        "prompt_sw": "2 + 2 ni ngapi?",
        "points": "1",
        "position": "0",
        "text_en_0": "Three",
        "text_sw_0": "Tatu",
        "text_en_1": "Four",
        "text_sw_1": "Nne",
        "text_en_2": "Five",
        "text_sw_2": "Tano",
        "correct": "1",
    }
    form.update(changes)
    return form


async def _quiz(console: Console, client: Any, course_id: uuid.UUID) -> uuid.UUID:
    response = await client.post(
        f"/admin/courses/{course_id}/quizzes",
        {"title_en": "Quiz 1", "title_sw": "Jaribio 1", "pass_mark_percent": "60", "is_published": "on"},
    )
    assert response.status == 303, await response.text()
    return _location_id(response)


async def test_quiz_questions_and_choices_side_by_side(console: Console) -> None:
    course_id = await _new_course(console, console.a.instructor)
    client = await console.as_user(console.a.instructor)
    quiz_id = await _quiz(console, client, course_id)
    quiz = await _scalar(console, sa.select(Quiz).where(Quiz.id == quiz_id))
    assert (quiz.title_sw, quiz.pass_mark_percent, quiz.is_published) == ("Jaribio 1", 60, True)
    assert quiz.institution_id == console.a.institution.id

    response = await client.post(f"/admin/courses/{course_id}/quizzes/{quiz_id}/questions", _question_form())
    assert response.status == 303
    question = await _scalar(console, sa.select(Question).where(Question.quiz_id == quiz_id))
    assert (question.prompt_en, question.prompt_sw) == ("What is 2 + 2?", "2 + 2 ni ngapi?")
    choices = await _all(
        console,
        sa.select(QuestionChoice).where(QuestionChoice.question_id == question.id).order_by(QuestionChoice.position),
    )
    assert [(c.text_en, c.text_sw, c.is_correct) for c in choices] == [
        ("Three", "Tatu", False),
        ("Four", "Nne", True),
        ("Five", "Tano", False),
    ]
    assert all(c.institution_id == console.a.institution.id for c in choices)

    status, html = await client.get(f"/admin/courses/{course_id}/quizzes/{quiz_id}")
    assert status == 200 and "2 + 2 ni ngapi?" in html and "Nne" in html
    assert "CON Q1/1: What is 2 + 2?\n1. Three\n2. Four\n3. Five\n0 Back 00 Home" in htmllib.unescape(html)
    assert "CON S1/1: 2 + 2 ni ngapi?\n1. Tatu\n2. Nne\n3. Tano\n0 Rudi 00 Mwanzo" in htmllib.unescape(html)

    # The editor in Kiswahili.
    await client.post("/admin/language", {"lang": "sw", "back": "/admin"})
    status, html = await client.get(f"/admin/courses/{course_id}/quizzes/{quiz_id}")
    assert status == 200 and "Ongeza swali" in html and "Muonekano kwenye USSD" in html
    status, html = await client.get(f"/admin/courses/{course_id}/questions/{question.id}")
    assert status == 200 and "Hariri swali" in html and 'value="Nne"' in html
    await client.post("/admin/language", {"lang": "en", "back": "/admin"})

    # Edit: a new Kiswahili prompt, the third choice becomes correct, the first goes, one is added.
    edit = _question_form(
        prompt_sw="Mbili jumlisha mbili ni ngapi?",
        choice_id_0=str(choices[0].id),
        choice_id_1=str(choices[1].id),
        choice_id_2=str(choices[2].id),
        remove_0="on",
        text_en_3="Twenty-two",
        text_sw_3="Ishirini na mbili",
        correct="2",
    )
    response = await client.post(f"/admin/courses/{course_id}/questions/{question.id}", edit)
    assert response.status == 303, await response.text()
    question = await _scalar(console, sa.select(Question).where(Question.id == question.id))
    assert question.prompt_sw == "Mbili jumlisha mbili ni ngapi?"
    live = await _all(
        console,
        sa.select(QuestionChoice)
        .where(QuestionChoice.question_id == question.id, QuestionChoice.deleted_at.is_(None))
        .order_by(QuestionChoice.position),
    )
    assert [(c.text_en, c.is_correct) for c in live] == [("Four", False), ("Five", True), ("Twenty-two", False)]
    [audit] = await _audits(console, "question.update")
    assert audit.before is not None and audit.after is not None
    assert [c["is_correct"] for c in audit.after["choices"]] == [False, True, False]

    # The quiz itself, then the question and the quiz go.
    response = await client.post(
        f"/admin/courses/{course_id}/quizzes/{quiz_id}",
        {"title_en": "Quiz one", "title_sw": "Jaribio la kwanza", "pass_mark_percent": "70", "is_final": "on"},
    )
    assert response.status == 303
    quiz = await _scalar(console, sa.select(Quiz).where(Quiz.id == quiz_id))
    assert (quiz.title_sw, quiz.pass_mark_percent, quiz.is_final, quiz.is_published) == (
        "Jaribio la kwanza",
        70,
        True,
        False,
    )
    response = await client.post(f"/admin/courses/{course_id}/questions/{question.id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(Question).where(Question.id == question.id))).deleted_at is not None
    response = await client.post(f"/admin/courses/{course_id}/quizzes/{quiz_id}/delete")
    assert response.status == 303
    assert (await _scalar(console, sa.select(Quiz).where(Quiz.id == quiz_id))).deleted_at is not None
    actions = [a.action for a in await _all(console, sa.select(AuditLog).order_by(AuditLog.at, AuditLog.id))]
    for action in ("quiz.create", "question.create", "question.update", "quiz.update", "question.delete"):
        assert action in actions
    assert "quiz.delete" in actions


async def test_a_bad_question_form_is_shown_again_and_writes_nothing(console: Console) -> None:
    course_id = await _new_course(console, console.a.admin)
    client = await console.as_user(console.a.admin)
    quiz_id = await _quiz(console, client, course_id)
    url = f"/admin/courses/{course_id}/quizzes/{quiz_id}/questions"
    bad_forms = [
        _question_form(correct=""),  # no correct choice
        _question_form(text_en_1="", text_sw_1="", text_en_2="", text_sw_2="", correct="0"),  # one choice
        _question_form(prompt_en=""),  # no English prompt
        _question_form(text_en_2="", correct="1"),  # a Swahili choice without its English
        _question_form(points="zero"),
    ]
    for form in bad_forms:
        response = await client.post(url, form)
        assert response.status == 422, form
        html = await response.text()
        assert 'id="form-errors"' in html and "Nothing was saved." in html
        assert 'value="Nne"' in html or form["text_sw_1"] == ""  # the rows typed are kept
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Question)) == 0
    assert await _scalar(console, sa.select(sa.func.count()).select_from(QuestionChoice)) == 0
    assert await _audits(console, "question.create") == []


# Tenancy


async def test_another_school_sees_and_changes_nothing(console: Console) -> None:
    course_id = await _new_course(console, console.a.instructor)
    client_a = await console.as_user(console.a.instructor)
    response = await client_a.post(f"/admin/courses/{course_id}/sections", {"title_en": "Unit", "position": "0"})
    section = await _scalar(console, sa.select(Section).where(Section.course_id == course_id))
    response = await client_a.post(
        f"/admin/courses/{course_id}/sections/{section.id}/lessons", {"title_en": "Lesson A"}
    )
    lesson_id = _location_id(response)
    quiz_id = await _quiz(console, client_a, course_id)
    await client_a.post(f"/admin/courses/{course_id}/quizzes/{quiz_id}/questions", _question_form())
    question = await _scalar(console, sa.select(Question).where(Question.quiz_id == quiz_id))
    choice = await _scalar(console, sa.select(QuestionChoice).where(QuestionChoice.question_id == question.id))
    audits_before = await _scalar(
        console, sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action.not_like("auth.%"))
    )

    for username in (console.b.admin, console.b.instructor):
        client = await console.as_user(username)
        status, html = await client.get("/admin/courses")
        assert status == 200 and "Form 2 Mathematics" not in html and str(course_id) not in html
        response = await client.client.get("/admin/courses?format=csv")
        assert "Form 2 Mathematics" not in (await response.read()).decode("utf-8-sig")
        for path in (
            f"/admin/courses/{course_id}",
            f"/admin/courses/{course_id}/lessons/{lesson_id}",
            f"/admin/courses/{course_id}/quizzes/{quiz_id}",
            f"/admin/courses/{course_id}/questions/{question.id}",
        ):
            status, html = await client.get(path)
            assert status == 404, path
            assert "Form 2 Mathematics" not in html and "2 + 2" not in html
        posts: list[tuple[str, dict[str, str]]] = [
            (f"/admin/courses/{course_id}", {**COURSE, "title_en": "Taken over"}),
            (f"/admin/courses/{course_id}/delete", {}),
            (f"/admin/courses/{course_id}/sections", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/sections/{section.id}", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/sections/{section.id}/lessons", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/lessons/{lesson_id}", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/lessons/{lesson_id}/delete", {}),
            (f"/admin/courses/{course_id}/quizzes", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/quizzes/{quiz_id}", {"title_en": "Intruder"}),
            (f"/admin/courses/{course_id}/quizzes/{quiz_id}/delete", {}),
            (f"/admin/courses/{course_id}/quizzes/{quiz_id}/questions", _question_form(prompt_en="Intruder")),
            (f"/admin/courses/{course_id}/quizzes/{quiz_id}/preview", _question_form()),
            (
                f"/admin/courses/{course_id}/questions/{question.id}",
                _question_form(prompt_en="Intruder", choice_id_0=str(choice.id)),
            ),
            (f"/admin/courses/{course_id}/questions/{question.id}/delete", {}),
            (f"/admin/courses/{course_id}/tags", {"slug": "intruder", "name_en": "Intruder"}),
            (f"/admin/courses/{course_id}/prerequisites", {"required_course_id": str(course_id)}),
        ]
        for path, form in posts:
            response = await client.post(path, form)
            assert response.status == 404, (path, response.status)
    course = await _scalar(console, sa.select(Course).where(Course.id == course_id))
    assert course.title_en == "Form 2 Mathematics" and course.deleted_at is None
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Section)) == 1
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Quiz)) == 1
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Question)) == 1
    assert (await _scalar(console, sa.select(Question).where(Question.id == question.id))).deleted_at is None
    assert await _scalar(console, sa.select(sa.func.count()).select_from(Tag)) == 0
    assert (
        await _scalar(
            console, sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action.not_like("auth.%"))
        )
        == audits_before
    )


# The USSD preview


async def test_the_preview_is_the_screen_a_learner_gets(console: Console) -> None:
    """The quiz page's preview, character for character, is what the USSD endpoint sends the
    school's learner for that question."""
    fixture = await _school_course(console, console.a.institution, "Kilimo", questions=2)
    long_prompt = "Which of these crops grows best in the semi-arid parts of Kenya’s Eastern region? " * 2
    async with console.makers() as session, session.begin():
        first = await session.get(Question, fixture.questions[0].id)
        assert first is not None
        first.prompt_en = long_prompt
        first.prompt_sw = "Zao lipi hustawi vizuri katika maeneo kame ya Mashariki mwa Kenya?"
        await enroll(session=session, learner_id=console.a.learner.id, course_id=fixture.course.id, clock=console.clock)
    client = await console.as_user(console.a.instructor)
    status, html = await client.get(f"/admin/courses/{fixture.course.id}/quizzes/{fixture.quiz.id}")
    assert status == 200
    page = htmllib.unescape(html)
    article = page[page.index(f'data-question="{fixture.questions[0].id}"') :]
    english = article[article.index('data-lang="en"') : article.index('data-lang="sw"')]
    shown = re.findall(r'<pre class="ussd" data-length="(\d+)">(.*?)</pre>', english, re.S)
    assert len(shown) >= 2  # too long for one screen: paged with "98 More"
    assert "Over the 182-character limit" in english and "replaced with plain ones" in english  # the ’

    phone = _Phone(client, "+254711000001")
    screen = await phone.dial()
    if "PIN" in screen:
        screen = await phone.press("1234")
    screen = await phone.press("1")  # take a quiz
    screen = await phone.press("1")  # the course
    screen = await phone.press("1")  # its quiz: question 1
    for length, text in shown:
        assert screen == text and int(length) == len(screen) <= SCREEN_BUDGET
        screen = await phone.press("98")


class _Phone:
    """Africa's Talking's form protocol, against the console's own server."""

    def __init__(self, client: Any, number: str) -> None:
        self.client = client.client
        self.number = number
        self.inputs: list[str] = []
        self.session_id = f"ATUid_{uuid.uuid4().hex}"

    async def hop(self) -> str:
        response = await self.client.post(
            "/ussd/africastalking",
            data={
                "sessionId": self.session_id,
                "serviceCode": "*384*123#",
                "phoneNumber": self.number,
                "networkCode": "63902",
                "text": "*".join(self.inputs),
            },
        )
        assert response.status == 200, await response.text()
        return await response.text()

    async def dial(self) -> str:
        return await self.hop()

    async def press(self, value: str) -> str:
        self.inputs.append(value)
        return await self.hop()


async def test_the_preview_counts_characters_and_warns(console: Console) -> None:
    short = await ussd_preview(
        Language.SW,
        prompt_en="2 + 2?",
        prompt_sw="2 + 2 ni?",
        choices=[("Four", "Nne"), ("Five", None)],
        number=2,
        total=3,
    )
    [screen] = short.screens
    assert screen.text == "CON S2/3: 2 + 2 ni?\n1. Nne\n2. Five\n0 Rudi 00 Mwanzo"
    assert screen.length == len(screen.text) == short.one_screen_length
    assert not short.over_budget and short.english_fallback  # "Five" has no Kiswahili

    long = await ussd_preview(
        Language.EN, prompt_en="word " * 60, prompt_sw=None, choices=[("a" * 40, None)] * 4, number=1, total=1
    )
    assert long.over_budget and long.over_hard_cap and long.one_screen_length > HARD_CAP
    assert len(long.screens) > 1 and all(s.length <= SCREEN_BUDGET for s in long.screens)
    assert "98 More" in long.screens[0].text

    # The live preview answers the form as typed, for the quiz's editors.
    course_id = await _new_course(console, console.a.instructor)
    client = await console.as_user(console.a.instructor)
    quiz_id = await _quiz(console, client, course_id)
    response = await client.post(
        f"/admin/courses/{course_id}/quizzes/{quiz_id}/preview",
        {
            "prompt_en": "Capital of Kenya?",
            "prompt_sw": "Mji mkuu wa Kenya?",
            "text_en_0": "Nairobi",
            "text_sw_0": "Nairobi",
        },
    )
    assert response.status == 200
    fragment = htmllib.unescape(await response.text())
    assert "<html" not in fragment
    screen = "CON Q1/1: Capital of Kenya?\n1. Nairobi\n0 Back 00 Home"
    assert screen in fragment and f'data-chars="{len(screen)}"' in fragment
    assert "CON S1/1: Mji mkuu wa Kenya?\n1. Nairobi\n0 Rudi 00 Mwanzo" in fragment
    assert (
        f'data-chars="{len("CON Q1/1: Capital of Kenya?" + chr(10) + "1. Nairobi" + chr(10) + "0 Back 00 Home")}"'
        in fragment
    )
