"""End to end in Chromium: a school's instructor creates a course, adds a quiz and a question in
English and Kiswahili with two choices (one correct), watching the USSD preview follow the
typing; then the database holds exactly that, in the instructor's school."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from lms_domain.assessments.models import Question, QuestionChoice, Quiz
from lms_domain.courses.models import Course
from lms_domain.platform.models import AuditLog
from tests.admin.conftest import Console, sign_in


async def test_an_instructor_builds_a_course_with_a_bilingual_quiz(console: Console, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 360, "height": 740})
    await sign_in(page, console.base_url, console.a.instructor)

    await page.goto(f"{console.base_url}/admin/courses")
    await page.get_by_role("link", name="New course").click()
    await page.get_by_label("Title (English)").fill("Form 3 Chemistry")
    await page.get_by_label("Title (Kiswahili)").fill("Kemia Kidato cha 3")
    await page.get_by_label("Summary (Kiswahili)").fill("Atomu na molekuli")
    await page.get_by_label("Short name for links (slug)").fill("form-3-chemistry")
    await page.get_by_role("button", name="Create course").click()
    await page.wait_for_url(re.compile(r"/admin/courses/[0-9a-f-]{36}$"))
    assert "Course created." in await page.locator("main").inner_text()

    quiz_form = page.locator("#new-quiz")
    await quiz_form.locator("summary").click()
    await quiz_form.get_by_label("Title (English)").fill("Atoms")
    await quiz_form.get_by_label("Title (Kiswahili)").fill("Atomu")
    await quiz_form.get_by_label("Published (learners can see it)").check()
    await quiz_form.get_by_role("button", name="Add quiz").click()
    await page.wait_for_url(re.compile(r"/quizzes/[0-9a-f-]{36}$"))

    question = page.locator("#new-question")
    await question.get_by_label("Question (English)").fill("What is the symbol for water?")
    await question.get_by_label("Question (Kiswahili)").fill("Alama ya maji ni ipi?")
    await question.get_by_label("Choice (English) 1", exact=True).fill("CO2")
    await question.get_by_label("Choice (Kiswahili) 1", exact=True).fill("CO2")
    await question.get_by_label("Choice (English) 2", exact=True).fill("H2O")
    await question.get_by_label("Choice (Kiswahili) 2", exact=True).fill("H2O (maji)")
    await question.get_by_label("Correct 2", exact=True).check()
    # The preview follows the typing: the real USSD screens, in both languages.
    preview = page.locator("#new-question-preview")
    await preview.locator("pre.ussd", has_text="2. H2O (maji)").wait_for()
    english = await preview.locator('[data-lang="en"] pre.ussd').first.inner_text()
    assert english == "CON Q1/1: What is the symbol for water?\n1. CO2\n2. H2O\n0 Back 00 Home"
    swahili = await preview.locator('[data-lang="sw"] pre.ussd').first.inner_text()
    assert swahili.startswith("CON S1/1: Alama ya maji ni ipi?")
    shown_count = await preview.locator('[data-lang="en"] .chars').first.inner_text()
    assert int(shown_count) == len(english)

    await question.get_by_role("button", name="Add question").click()
    await page.locator("text=Question added.").wait_for()
    assert await page.locator("[data-question] tr[data-correct]").inner_text() == "2\tH2O\tH2O (maji)\t✓ Correct"

    async with console.makers() as session:
        course = await session.scalar(sa.select(Course).where(Course.slug == "form-3-chemistry"))
        assert course is not None
        assert (course.title_en, course.title_sw, course.summary_sw) == (
            "Form 3 Chemistry",
            "Kemia Kidato cha 3",
            "Atomu na molekuli",
        )
        assert course.institution_id == console.a.institution.id and course.deleted_at is None
        quiz = await session.scalar(sa.select(Quiz).where(Quiz.course_id == course.id))
        assert quiz is not None and (quiz.title_en, quiz.title_sw, quiz.is_published) == ("Atoms", "Atomu", True)
        assert quiz.institution_id == console.a.institution.id
        stored = await session.scalar(sa.select(Question).where(Question.quiz_id == quiz.id))
        assert stored is not None
        assert (stored.prompt_en, stored.prompt_sw) == ("What is the symbol for water?", "Alama ya maji ni ipi?")
        assert stored.institution_id == console.a.institution.id
        choices = list(
            await session.scalars(
                sa.select(QuestionChoice)
                .where(QuestionChoice.question_id == stored.id)
                .order_by(QuestionChoice.position)
            )
        )
        assert [(c.text_en, c.text_sw, c.is_correct) for c in choices] == [
            ("CO2", "CO2", False),
            ("H2O", "H2O (maji)", True),
        ]
        assert {c.institution_id for c in choices} == {console.a.institution.id}
        actions = set(await session.scalars(sa.select(AuditLog.action)))
        assert {"course.create", "quiz.create", "question.create"} <= actions
    await page.close()
