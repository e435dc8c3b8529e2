"""Course structure and quiz authoring over HTTP: building a course, reading it as a learner,
tenancy, roles, prerequisite cycles and validation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.api.conftest import World

API = "/api/v1"
CHECKSUM = "ab" * 32


def course_body(slug: str, **extra: object) -> dict[str, object]:
    return {"slug": slug, "title_en": f"Course {slug}", "title_sw": f"Kozi {slug}", **extra}


def asset_body(**extra: object) -> dict[str, object]:
    return {
        "kind": "pdf",
        "title": "Worksheet",
        "language": "en",
        "file_path": "chemistry/worksheet-1.pdf",
        "mime_type": "application/pdf",
        "checksum_sha256": CHECKSUM,
        "size_bytes": 48_213,
        **extra,
    }


def choices(correct: int = 0, count: int = 4) -> list[dict[str, object]]:
    return [
        {"text_en": f"Answer {n}", "text_sw": f"Jibu {n}", "is_correct": n == correct, "position": n}
        for n in range(count)
    ]


def question_body(n: int, **extra: object) -> dict[str, object]:
    return {
        "prompt_en": f"Question {n}?",
        "prompt_sw": f"Swali {n}?",
        "position": n,
        "points": 2,
        "choices": choices(correct=n % 4),
        **extra,
    }


def keys_anywhere(value: Any) -> set[str]:
    """Every key in a JSON document, however deeply nested."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_anywhere(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_anywhere(v)}
    return set()


async def ok(world: World, method: str, path: str, token: str, status: int = 200, **kw: Any) -> Any:
    got, body = await world.call(method, API + path, token, **kw)
    assert got == status, (method, path, got, body)
    return body


@dataclass
class Built:
    """One of school a's courses, published, with one of everything beneath it."""

    course: str
    other_course: str
    section: str
    empty_section: str
    lesson: str
    asset: str
    tag: str
    quiz: str
    question: str
    choice: str


async def build(world: World, token: str) -> Built:
    course = await ok(world, "POST", "/courses", token, 201, json=course_body("chemistry", is_published=True))
    other = await ok(world, "POST", "/courses", token, 201, json=course_body("physics", is_published=True))
    c = course["id"]
    section = await ok(world, "POST", f"/courses/{c}/sections", token, 201, json={"title_en": "Atoms"})
    empty = await ok(world, "POST", f"/courses/{c}/sections", token, 201, json={"title_en": "Empty", "position": 1})
    lesson = await ok(world, "POST", f"/sections/{section['id']}/lessons", token, 201, json={"title_en": "Protons"})
    asset = await ok(world, "POST", f"/lessons/{lesson['id']}/assets", token, 201, json=asset_body())
    tag = await ok(world, "POST", "/tags", token, 201, json={"slug": "science", "name_en": "Science"})
    await ok(world, "PUT", f"/courses/{c}/tags/{tag['id']}", token)
    await ok(world, "PUT", f"/courses/{c}/prerequisites/{other['id']}", token)
    quiz = await ok(
        world, "POST", f"/courses/{c}/quizzes", token, 201, json={"title_en": "Atoms quiz", "is_published": True}
    )
    question = await ok(world, "POST", f"/quizzes/{quiz['id']}/questions", token, 201, json=question_body(0))
    return Built(
        course=c,
        other_course=other["id"],
        section=section["id"],
        empty_section=empty["id"],
        lesson=lesson["id"],
        asset=asset["id"],
        tag=tag["id"],
        quiz=quiz["id"],
        question=question["id"],
        choice=question["choices"][0]["id"],
    )


def reads(b: Built) -> list[str]:
    return [
        f"/courses/{b.course}/sections",
        f"/sections/{b.section}/lessons",
        f"/lessons/{b.lesson}",
        f"/lessons/{b.lesson}/assets",
        f"/courses/{b.course}/tags",
        f"/courses/{b.course}/prerequisites",
        f"/courses/{b.course}/quizzes",
        f"/quizzes/{b.quiz}",
        f"/quizzes/{b.quiz}/questions",
        f"/quizzes/{b.quiz}/answer-key",
    ]


def writes(b: Built) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every write, each with a valid body so only tenancy or role can refuse it."""
    return [
        ("POST", f"/courses/{b.course}/sections", {"title_en": "Injected"}),
        ("PATCH", f"/sections/{b.section}", {"title_en": "Hijacked"}),
        ("DELETE", f"/sections/{b.empty_section}", None),
        ("POST", f"/sections/{b.section}/lessons", {"title_en": "Injected"}),
        ("PATCH", f"/lessons/{b.lesson}", {"body_en": "Hijacked"}),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body()),
        ("DELETE", f"/assets/{b.asset}", None),
        ("PUT", f"/courses/{b.course}/tags/{b.tag}", None),
        ("DELETE", f"/courses/{b.course}/tags/{b.tag}", None),
        ("DELETE", f"/courses/{b.course}/prerequisites/{b.other_course}", None),
        ("PUT", f"/courses/{b.other_course}/prerequisites/{b.course}", None),
        ("POST", f"/courses/{b.course}/quizzes", {"title_en": "Injected"}),
        ("PATCH", f"/quizzes/{b.quiz}", {"pass_mark_percent": 0}),
        ("POST", f"/quizzes/{b.quiz}/questions", question_body(9)),
        ("PATCH", f"/questions/{b.question}", {"points": 100}),
        ("POST", f"/questions/{b.question}/choices", {"text_en": "Injected", "is_correct": True}),
        ("PATCH", f"/choices/{b.choice}", {"is_correct": False}),
        ("DELETE", f"/choices/{b.choice}", None),
        ("DELETE", f"/questions/{b.question}", None),
        ("DELETE", f"/lessons/{b.lesson}", None),
        ("DELETE", f"/quizzes/{b.quiz}", None),
    ]


async def snapshot(world: World, b: Built, token: str) -> list[Any]:
    return [await ok(world, "GET", path, token) for path in reads(b)]


async def test_staff_builds_a_course_and_learner_reads_it_without_answers(world: World) -> None:
    teacher, learner = world.a.tokens["instructor"], world.a.tokens["learner"]
    course = await ok(world, "POST", "/courses", teacher, 201, json=course_body("form-3-chemistry"))
    basics = await ok(world, "POST", "/courses", teacher, 201, json=course_body("form-2-chemistry"))
    c = course["id"]

    sections = [
        await ok(
            world, "POST", f"/courses/{c}/sections", teacher, 201, json={"title_en": t, "title_sw": s, "position": p}
        )
        for p, (t, s) in enumerate([("Atoms", "Atomu"), ("Bonding", "Vifungo")])
    ]
    assert {s["institution_id"] for s in sections} == {str(world.a.institution.id)}
    lessons = []
    for section in sections:
        for n in range(2):
            lesson = await ok(
                world,
                "POST",
                f"/sections/{section['id']}/lessons",
                teacher,
                201,
                json={
                    "title_en": f"Lesson {n}",
                    "title_sw": f"Somo {n}",
                    "body_en": "Read this.",
                    "body_sw": "Soma hii.",
                    "position": n,
                    "duration_minutes": 15,
                },
            )
            assert lesson["course_id"] == c and lesson["section_id"] == section["id"]
            lessons.append(lesson)
    asset = await ok(world, "POST", f"/lessons/{lessons[0]['id']}/assets", teacher, 201, json=asset_body())
    assert asset["checksum_sha256"] == CHECKSUM and asset["institution_id"] == str(world.a.institution.id)
    tag = await ok(
        world, "POST", "/tags", teacher, 201, json={"slug": "chemistry", "name_en": "Chemistry", "name_sw": "Kemia"}
    )
    attached = await ok(world, "PUT", f"/courses/{c}/tags/{tag['id']}", teacher)
    assert attached["id"] == tag["id"]
    await ok(world, "PUT", f"/courses/{c}/tags/{tag['id']}", teacher)  # idempotent
    prerequisite = await ok(world, "PUT", f"/courses/{c}/prerequisites/{basics['id']}", teacher)
    again = await ok(world, "PUT", f"/courses/{c}/prerequisites/{basics['id']}", teacher)
    assert again["id"] == prerequisite["id"] and prerequisite["required_course_id"] == basics["id"]

    quiz = await ok(
        world,
        "POST",
        f"/courses/{c}/quizzes",
        teacher,
        201,
        json={
            "title_en": "Atoms quiz",
            "title_sw": "Jaribio la atomu",
            "section_id": sections[0]["id"],
            "pass_mark_percent": 60,
            "max_attempts": 3,
            "is_final": True,
        },
    )
    assert quiz["is_published"] is False  # drafts until the author publishes
    for n in range(5):
        created = await ok(world, "POST", f"/quizzes/{quiz['id']}/questions", teacher, 201, json=question_body(n))
        assert [ch["is_correct"] for ch in created["choices"]].count(True) == 1

    # Nothing is visible to learners until the course is published, and the quiz after that.
    assert (await world.call("GET", f"{API}/courses/{c}/sections", learner))[0] == 404
    await ok(world, "PATCH", f"/courses/{c}", teacher, json={"is_published": True})
    assert (await ok(world, "GET", f"/courses/{c}/quizzes", learner))["items"] == []
    assert (await world.call("GET", f"{API}/quizzes/{quiz['id']}", learner))[0] == 404
    assert (await world.call("GET", f"{API}/quizzes/{quiz['id']}/questions", learner))[0] == 404
    await ok(world, "PATCH", f"/quizzes/{quiz['id']}", teacher, json={"is_published": True})

    page = await ok(world, "GET", f"/courses/{c}/sections", learner)
    assert sorted((s["position"], s["title_sw"]) for s in page["items"]) == [(0, "Atomu"), (1, "Vifungo")]
    page = await ok(world, "GET", f"/sections/{sections[1]['id']}/lessons", learner)
    assert len(page["items"]) == 2 and "body_en" not in page["items"][0]
    lesson = await ok(world, "GET", f"/lessons/{lessons[0]['id']}", learner)
    assert lesson["body_sw"] == "Soma hii."
    assert [a["id"] for a in (await ok(world, "GET", f"/lessons/{lessons[0]['id']}/assets", learner))["items"]] == [
        asset["id"]
    ]
    assert [t["slug"] for t in (await ok(world, "GET", f"/courses/{c}/tags", learner))["items"]] == ["chemistry"]
    prerequisites = await ok(world, "GET", f"/courses/{c}/prerequisites", learner)
    assert [p["required_course_id"] for p in prerequisites["items"]] == [basics["id"]]
    assert [q["id"] for q in (await ok(world, "GET", f"/courses/{c}/quizzes", learner))["items"]] == [quiz["id"]]

    learner_view = await ok(world, "GET", f"/quizzes/{quiz['id']}/questions", learner)
    assert len(learner_view["items"]) == 5
    assert all(len(q["choices"]) == 4 and q["prompt_sw"].startswith("Swali") for q in learner_view["items"])
    assert "is_correct" not in keys_anywhere(learner_view)
    status, raw = await world.call("GET", f"{API}/quizzes/{quiz['id']}/questions", learner)
    assert status == 200 and "is_correct" not in str(raw)
    # Staff reading the learner view get the same answer-free shape.
    assert "is_correct" not in keys_anywhere(await ok(world, "GET", f"/quizzes/{quiz['id']}/questions", teacher))
    assert (await world.call("GET", f"{API}/quizzes/{quiz['id']}/answer-key", learner))[0] == 403

    key = await ok(world, "GET", f"/quizzes/{quiz['id']}/answer-key", world.a.tokens["institution_admin"])
    assert len(key["items"]) == 5
    for item in key["items"]:
        correct = [ch["position"] for ch in item["choices"] if ch["is_correct"]]
        assert correct == [item["position"] % 4]


async def test_other_school_gets_404_everywhere_and_changes_nothing(world: World) -> None:
    b = await build(world, world.a.tokens["instructor"])
    before = await snapshot(world, b, world.a.tokens["instructor"])
    b_tag = await ok(
        world, "POST", "/tags", world.b.tokens["instructor"], 201, json={"slug": "science", "name_en": "S"}
    )
    for role in ("institution_admin", "instructor", "learner"):
        token = world.b.tokens[role]
        for path in reads(b):
            status, body = await world.call("GET", API + path, token)
            assert status == 404, (role, path, status, body)
        for method, path, body in writes(b):
            status, answer = await world.call(method, API + path, token, json=body)
            assert status == 404, (role, method, path, status, answer)
        # Nor may school b hang its own tag on school a's course.
        status, _ = await world.call("PUT", f"{API}/courses/{b.course}/tags/{b_tag['id']}", token)
        assert status == 404
        tags = await ok(world, "GET", "/tags", token)
        assert b.tag not in [t["id"] for t in tags["items"]]
    assert await snapshot(world, b, world.a.tokens["instructor"]) == before
    # School a cannot use school b's tag or require school b's course either.
    teacher = world.a.tokens["instructor"]
    assert (await world.call("PUT", f"{API}/courses/{b.course}/tags/{b_tag['id']}", teacher))[0] == 404
    b_course = await ok(world, "POST", "/courses", world.b.tokens["instructor"], 201, json=course_body("b-course"))
    assert (await world.call("PUT", f"{API}/courses/{b.course}/prerequisites/{b_course['id']}", teacher))[0] == 404
    assert (await world.call("PUT", f"{API}/courses/{b_course['id']}/prerequisites/{b.course}", teacher))[0] == 404


async def test_learners_get_403_on_every_write(world: World) -> None:
    b = await build(world, world.a.tokens["instructor"])
    before = await snapshot(world, b, world.a.tokens["instructor"])
    learner = world.a.tokens["learner"]
    for method, path, body in writes(b):
        status, answer = await world.call(method, API + path, learner, json=body)
        assert status == 403 and answer["code"] == "permission_denied", (method, path, status, answer)
    status, _ = await world.call("POST", f"{API}/tags", learner, json={"slug": "mine", "name_en": "Mine"})
    assert status == 403
    status, _ = await world.call("GET", f"{API}/quizzes/{b.quiz}/answer-key", learner)
    assert status == 403
    assert await snapshot(world, b, world.a.tokens["instructor"]) == before
    # The admin, an editor too, can do every one of them.
    for method, path, body in writes(b):
        status, answer = await world.call(method, API + path, world.a.tokens["institution_admin"], json=body)
        assert status in (200, 201, 204), (method, path, status, answer)


async def test_prerequisite_cycles_and_self_are_refused(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    a, b, c = [
        (await ok(world, "POST", "/courses", teacher, 201, json=course_body(slug)))["id"] for slug in ("aa", "bb", "cc")
    ]
    await ok(world, "PUT", f"/courses/{a}/prerequisites/{b}", teacher)
    await ok(world, "PUT", f"/courses/{b}/prerequisites/{c}", teacher)
    status, body = await world.call("PUT", f"{API}/courses/{c}/prerequisites/{a}", teacher)
    assert status == 409 and body["code"] == "prerequisite_cycle"
    status, body = await world.call("PUT", f"{API}/courses/{b}/prerequisites/{a}", teacher)
    assert status == 409 and body["code"] == "prerequisite_cycle"
    status, body = await world.call("PUT", f"{API}/courses/{a}/prerequisites/{a}", teacher)
    assert status == 422 and body["code"] == "prerequisite_self"
    # Breaking the chain allows the edge that would have closed it; a new link then revives.
    await ok(world, "DELETE", f"/courses/{b}/prerequisites/{c}", teacher, 204)
    assert (await world.call("DELETE", f"{API}/courses/{b}/prerequisites/{c}", teacher))[0] == 404
    await ok(world, "PUT", f"/courses/{c}/prerequisites/{a}", teacher)
    status, body = await world.call("PUT", f"{API}/courses/{b}/prerequisites/{c}", teacher)
    assert status == 409 and body["code"] == "prerequisite_cycle"
    assert [
        p["required_course_id"] for p in (await ok(world, "GET", f"/courses/{c}/prerequisites", teacher))["items"]
    ] == [a]


async def test_validation_errors_are_422(world: World) -> None:
    b = await build(world, world.a.tokens["instructor"])
    teacher = world.a.tokens["instructor"]
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(checksum_sha256="AB" * 32)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(checksum_sha256="ab" * 31)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(checksum_sha256="zz" * 32)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(file_path=None)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(file_path="../etc/passwd")),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(file_path="/etc/passwd")),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(size_bytes=-1)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(size_bytes=2**63)),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(language="fr")),
        ("POST", f"/lessons/{b.lesson}/assets", asset_body(kind="hologram")),
        ("POST", f"/quizzes/{b.quiz}/questions", question_body(1, choices=choices(count=1))),
        ("POST", f"/quizzes/{b.quiz}/questions", question_body(1, choices=choices(count=7))),
        (
            "POST",
            f"/quizzes/{b.quiz}/questions",
            question_body(1, choices=[{**ch, "is_correct": True} for ch in choices(count=3)[:2]]),
        ),
        ("POST", f"/quizzes/{b.quiz}/questions", question_body(1, choices=choices(correct=9))),
        ("POST", f"/quizzes/{b.quiz}/questions", question_body(1, points=0)),
        ("POST", f"/courses/{b.course}/quizzes", {"title_en": "Q", "pass_mark_percent": 101}),
        ("POST", f"/courses/{b.course}/quizzes", {"title_en": "Q", "max_attempts": 0}),
        ("POST", f"/courses/{b.course}/quizzes", {"title_en": "Q", "section_id": "not-a-uuid"}),
        ("POST", f"/courses/{b.course}/sections", {"title_en": "Nul\x00byte"}),
        ("POST", f"/courses/{b.course}/sections", {"title_en": "Atoms", "position": -1}),
        ("POST", f"/courses/{b.course}/sections", {"title_en": "Atoms", "colour": "red"}),
        ("POST", f"/sections/{b.section}/lessons", {"title_en": "L", "duration_minutes": -5}),
        ("POST", f"/sections/{b.section}/lessons", {"title_en": ""}),
        ("POST", "/tags", {"slug": "Not A Slug", "name_en": "X"}),
    ]
    for method, path, body in bad:
        status, answer = await world.call(method, API + path, teacher, json=body)
        assert status == 422 and answer["code"] in {"validation_error", "nul_character"}, (path, body, status, answer)
    status, answer = await world.call("GET", f"{API}/tags?limit=0", teacher)
    assert status == 422 and answer["errors"][0]["loc"] == ["query", "limit"]
    # Checked against the database rather than the schema:
    other_section = await ok(
        world, "POST", f"/courses/{b.other_course}/sections", teacher, 201, json={"title_en": "Elsewhere"}
    )
    status, answer = await world.call(
        "POST", f"{API}/courses/{b.course}/quizzes", teacher, json={"title_en": "Q", "section_id": other_section["id"]}
    )
    assert status == 422 and answer["code"] == "section_not_in_course"
    status, answer = await world.call(
        "PATCH", f"{API}/lessons/{b.lesson}", teacher, json={"section_id": other_section["id"]}
    )
    assert status == 422 and answer["code"] == "section_not_in_course"
    key = await ok(world, "GET", f"/quizzes/{b.quiz}/answer-key", teacher)
    assert len(key["items"]) == 1  # nothing refused was stored


async def test_sections_with_lessons_cannot_be_deleted(world: World) -> None:
    b = await build(world, world.a.tokens["instructor"])
    teacher = world.a.tokens["instructor"]
    status, body = await world.call("DELETE", f"{API}/sections/{b.section}", teacher)
    assert status == 409 and body["code"] == "section_not_empty"
    await ok(world, "DELETE", f"/lessons/{b.lesson}", teacher, 204)
    assert (await world.call("GET", f"{API}/lessons/{b.lesson}", teacher))[0] == 404
    assert (await world.call("DELETE", f"{API}/assets/{b.asset}", teacher))[0] == 404  # went with its lesson
    await ok(world, "DELETE", f"/sections/{b.section}", teacher, 204)
    assert (await world.call("GET", f"{API}/sections/{b.section}/lessons", teacher))[0] == 404
    # A section holding a quiz is not empty either.
    quiz = await ok(
        world,
        "POST",
        f"/courses/{b.course}/quizzes",
        teacher,
        201,
        json={"title_en": "Q", "section_id": b.empty_section},
    )
    assert (await world.call("DELETE", f"{API}/sections/{b.empty_section}", teacher))[0] == 409
    await ok(world, "PATCH", f"/quizzes/{quiz['id']}", teacher, json={"section_id": None})
    await ok(world, "DELETE", f"/sections/{b.empty_section}", teacher, 204)
    sections = await ok(world, "GET", f"/courses/{b.course}/sections", teacher)
    assert sections["items"] == []
    # Everything beneath a deleted course is gone with it.
    await ok(world, "DELETE", f"/courses/{b.course}", teacher, 204)
    assert (await world.call("GET", f"{API}/quizzes/{b.quiz}", teacher))[0] == 404
    assert (await world.call("GET", f"{API}/quizzes/{b.quiz}/answer-key", teacher))[0] == 404


async def test_tags_are_per_school_plus_catalogue(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    mine = await ok(world, "POST", "/tags", teacher, 201, json={"slug": "maths", "name_en": "Maths"})
    status, body = await world.call(
        "POST", f"{API}/tags", world.a.tokens["institution_admin"], json={"slug": "maths", "name_en": "M"}
    )
    assert status == 409 and body["code"] == "tag_exists"
    shared = await ok(world, "POST", "/tags", world.platform_token, 201, json={"slug": "maths", "name_en": "Maths"})
    assert shared["institution_id"] is None and shared["id"] != mine["id"]
    theirs = await ok(
        world, "POST", "/tags", world.b.tokens["instructor"], 201, json={"slug": "maths", "name_en": "Hesabu"}
    )
    assert theirs["id"] not in (mine["id"], shared["id"])
    visible = {t["id"] for t in (await ok(world, "GET", "/tags", world.a.tokens["learner"]))["items"]}
    assert visible == {mine["id"], shared["id"]}

    course = await ok(world, "POST", "/courses", teacher, 201, json=course_body("algebra"))
    c = course["id"]
    await ok(world, "PUT", f"/courses/{c}/tags/{shared['id']}", teacher)
    await ok(world, "PUT", f"/courses/{c}/tags/{mine['id']}", teacher)
    await ok(world, "DELETE", f"/courses/{c}/tags/{mine['id']}", teacher, 204)
    assert (await world.call("DELETE", f"{API}/courses/{c}/tags/{mine['id']}", teacher))[0] == 404
    assert [t["id"] for t in (await ok(world, "GET", f"/courses/{c}/tags", teacher))["items"]] == [shared["id"]]
    await ok(world, "PUT", f"/courses/{c}/tags/{mine['id']}", teacher)  # revives the detached link
    tagged = {t["id"] for t in (await ok(world, "GET", f"/courses/{c}/tags", teacher))["items"]}
    assert tagged == {mine["id"], shared["id"]}
    status, page = await world.call("GET", f"{API}/courses?tag=maths", teacher)
    assert status == 200 and [x["id"] for x in page["items"]] == [c]
    # A catalogue course may only carry catalogue tags, whoever attaches them.
    catalogue = await ok(world, "POST", "/courses", world.platform_token, 201, json=course_body("shared-maths"))
    assert (await world.call("PUT", f"{API}/courses/{catalogue['id']}/tags/{mine['id']}", world.platform_token))[
        0
    ] == 404
    await ok(world, "PUT", f"/courses/{catalogue['id']}/tags/{shared['id']}", world.platform_token)


async def test_catalogue_structure_is_shared_but_only_platform_admins_edit_it(world: World) -> None:
    b = await build(world, world.platform_token)
    assert (await ok(world, "GET", f"/lessons/{b.lesson}", world.platform_token))["institution_id"] is None
    for school in (world.a, world.b):
        for path in reads(b)[:-1]:  # all but the answer key
            await ok(world, "GET", path, school.tokens["learner"])
        assert "is_correct" not in keys_anywhere(
            await ok(world, "GET", f"/quizzes/{b.quiz}/questions", school.tokens["learner"])
        )
        for role in ("institution_admin", "instructor", "learner"):
            for method, path, body in writes(b):
                status, answer = await world.call(method, API + path, school.tokens[role], json=body)
                assert status == 403, (role, method, path, status, answer)
    # A catalogue course may not require a school's course: that school's learners alone could finish it.
    school_course = await ok(world, "POST", "/courses", world.a.tokens["instructor"], 201, json=course_body("local"))
    status, body = await world.call(
        "PUT", f"{API}/courses/{b.course}/prerequisites/{school_course['id']}", world.platform_token
    )
    assert status == 422 and body["code"] == "prerequisite_out_of_scope"
    # ...but a school's course may require a catalogue course.
    await ok(world, "PUT", f"/courses/{school_course['id']}/prerequisites/{b.course}", world.a.tokens["instructor"])


async def test_choices_keep_one_correct_answer_and_at_most_six(world: World) -> None:
    b = await build(world, world.a.tokens["instructor"])
    teacher = world.a.tokens["instructor"]
    bare = await ok(world, "POST", f"/quizzes/{b.quiz}/questions", teacher, 201, json={"prompt_en": "Bare?"})
    assert bare["choices"] == []
    first = await ok(
        world, "POST", f"/questions/{bare['id']}/choices", teacher, 201, json={"text_en": "One", "is_correct": True}
    )
    second = await ok(
        world,
        "POST",
        f"/questions/{bare['id']}/choices",
        teacher,
        201,
        json={"text_en": "Two", "is_correct": True, "position": 1},
    )

    async def correct() -> list[str]:
        key = await ok(world, "GET", f"/quizzes/{b.quiz}/answer-key", teacher)
        (item,) = [q for q in key["items"] if q["id"] == bare["id"]]
        return [ch["id"] for ch in item["choices"] if ch["is_correct"]]

    assert await correct() == [second["id"]]
    changed = await ok(world, "PATCH", f"/choices/{first['id']}", teacher, json={"is_correct": True, "text_sw": "Moja"})
    assert changed["text_sw"] == "Moja" and await correct() == [first["id"]]
    for n in range(4):
        await ok(world, "POST", f"/questions/{bare['id']}/choices", teacher, 201, json={"text_en": f"More {n}"})
    status, body = await world.call(
        "POST", f"{API}/questions/{bare['id']}/choices", teacher, json={"text_en": "Seventh"}
    )
    assert status == 409 and body["code"] == "too_many_choices"
    await ok(world, "DELETE", f"/choices/{second['id']}", teacher, 204)
    await ok(world, "POST", f"/questions/{bare['id']}/choices", teacher, 201, json={"text_en": "Sixth again"})
    updated = await ok(world, "PATCH", f"/questions/{bare['id']}", teacher, json={"prompt_sw": "Tupu?", "points": 3})
    assert updated["points"] == 3 and len(updated["choices"]) == 6
    await ok(world, "DELETE", f"/questions/{bare['id']}", teacher, 204)
    assert (await world.call("PATCH", f"{API}/choices/{first['id']}", teacher, json={"text_en": "x"}))[0] == 404
