"""The acceptance walk, as a new user would do it, over HTTP only.

An instructor builds a course with a quiz; a learner enrolls, studies, passes; the learner
downloads the certificate and the public verification confirms it; the other school's
admin sees none of it.
"""

from __future__ import annotations

from typing import Any

from tests.api.conftest import World

QUESTIONS = [
    ("2 + 2 = ?", "2 + 2 = ?", ["3", "4", "5"], 1),
    ("Capital of Kenya?", "Mji mkuu wa Kenya?", ["Mombasa", "Kisumu", "Nairobi"], 2),
    ("Half of 10?", "Nusu ya 10?", ["5", "2", "20"], 0),
]


async def test_instructor_to_certificate_walkthrough(world: World) -> None:
    teacher, learner, rival = (
        world.a.tokens["instructor"],
        world.a.tokens["learner"],
        world.b.tokens["institution_admin"],
    )

    # 1. The instructor builds and publishes a course with two lessons and a final quiz.
    status, course = await world.call(
        "POST",
        "/api/v1/courses",
        teacher,
        json={"slug": "form-1-numbers", "title_en": "Form 1 Numbers", "title_sw": "Namba Kidato cha Kwanza"},
    )
    assert status == 201, course
    status, section = await world.call(
        "POST", f"/api/v1/courses/{course['id']}/sections", teacher, json={"title_en": "Basics", "title_sw": "Misingi"}
    )
    assert status == 201, section
    lesson_ids = []
    for n in range(2):
        status, lesson = await world.call(
            "POST",
            f"/api/v1/sections/{section['id']}/lessons",
            teacher,
            json={"title_en": f"Lesson {n + 1}", "title_sw": f"Somo {n + 1}", "body_en": "Read this.", "position": n},
        )
        assert status == 201, lesson
        lesson_ids.append(lesson["id"])
    status, quiz = await world.call(
        "POST",
        f"/api/v1/courses/{course['id']}/quizzes",
        teacher,
        json={
            "title_en": "Final quiz",
            "title_sw": "Jaribio la mwisho",
            "is_final": True,
            "pass_mark_percent": 60,
            "is_published": True,
        },
    )
    assert status == 201, quiz
    for position, (prompt_en, prompt_sw, choices, right) in enumerate(QUESTIONS):
        status, question = await world.call(
            "POST",
            f"/api/v1/quizzes/{quiz['id']}/questions",
            teacher,
            json={
                "prompt_en": prompt_en,
                "prompt_sw": prompt_sw,
                "position": position,
                "choices": [
                    {"text_en": c, "text_sw": c, "is_correct": i == right, "position": i} for i, c in enumerate(choices)
                ],
            },
        )
        assert status == 201, question
    status, published = await world.call(
        "PATCH", f"/api/v1/courses/{course['id']}", teacher, json={"is_published": True}
    )
    assert status == 200 and published["is_published"]

    # 2. The learner finds it, enrolls and studies every lesson.
    status, listing = await world.call("GET", "/api/v1/courses?q=numbers", learner)
    assert [c["id"] for c in listing["items"]] == [course["id"]]
    status, enrollment = await world.call(
        "POST",
        "/api/v1/enrollments",
        learner,
        json={"course_id": course["id"]},
        headers={"Idempotency-Key": "enroll-numbers-1"},
    )
    assert status == 201, enrollment
    for lesson_id in lesson_ids:
        status, progress = await world.call(
            "PUT", f"/api/v1/lessons/{lesson_id}/progress", learner, json={"percent": 100}
        )
        assert status == 200, progress

    # 3. The learner takes the quiz: the questions come without answers.
    status, attempt = await world.call("POST", f"/api/v1/quizzes/{quiz['id']}/attempts", learner)
    assert status == 201, attempt
    assert "is_correct" not in str(attempt)
    answers = _answers(attempt)
    status, result = await world.call(
        "POST", f"/api/v1/attempts/{attempt['id']}/submit", learner, json={"answers": answers}
    )
    assert status == 200, result
    assert result["passed"] is True and result["percent"] == 100
    certificate = result["certificate"]
    assert certificate is not None

    # 4. The certificate downloads, and the public page and JSON confirm it.
    response = await world.client.get(f"/api/v1/certificates/{certificate['id']}/pdf", headers=world.auth(learner))
    assert response.status == 200 and (await response.read()).startswith(b"%PDF")
    code = certificate["code"]
    status, verification = await world.call("GET", f"/api/v1/verify/{code.lower()}")
    assert status == 200 and verification["valid"] is True
    assert verification["course_title"] in ("Form 1 Numbers", "Namba Kidato cha Kwanza")
    page = await world.client.get(f"/verify/{code}")
    assert page.status == 200 and "Learner Alpha School" in await page.text()

    # 5. The other school's admin sees none of it.
    assert (await world.call("GET", f"/api/v1/courses/{course['id']}", rival))[0] == 404
    assert (await world.call("GET", "/api/v1/courses", rival))[1]["items"] == []
    assert (await world.call("GET", f"/api/v1/quizzes/{quiz['id']}", rival))[0] == 404
    assert (await world.call("GET", f"/api/v1/attempts/{attempt['id']}", rival))[0] == 404
    assert (await world.call("GET", f"/api/v1/certificates/{certificate['id']}", rival))[0] == 404
    assert (await world.call("GET", "/api/v1/certificates", rival))[1]["items"] == []
    assert (await world.call("GET", "/api/v1/enrollments", rival))[1]["items"] == []
    assert (await world.call("GET", f"/api/v1/learners/{world.a.learner.id}", rival))[0] == 404


def _answers(attempt: dict[str, Any]) -> dict[str, str]:
    """Pick the right choice by its text, as a learner who knows the answers would."""
    right_text = {prompt: choices[right] for prompt, _, choices, right in QUESTIONS}
    chosen = {}
    for question in attempt["questions"]:
        wanted = right_text[question["prompt_en"]]
        chosen[question["id"]] = next(c["id"] for c in question["choices"] if c["text_en"] == wanted)
    return chosen
