"""Courses over HTTP: authoring, browsing, tenancy."""

from __future__ import annotations

from tests.api.conftest import World


def course(slug: str = "form-3-chemistry", **extra: object) -> dict[str, object]:
    return {"slug": slug, "title_en": "Form 3 Chemistry", "title_sw": "Kemia Kidato cha Tatu", **extra}


async def test_instructor_creates_and_learner_browses(world: World) -> None:
    teacher, learner = world.a.tokens["instructor"], world.a.tokens["learner"]
    status, created = await world.call("POST", "/api/v1/courses", teacher, json=course())
    assert status == 201 and created["institution_id"] == str(world.a.institution.id)
    status, page = await world.call("GET", "/api/v1/courses", learner)
    assert page["items"] == []  # unpublished: learners do not see it
    status, _ = await world.call("GET", f"/api/v1/courses/{created['id']}", learner)
    assert status == 404
    status, updated = await world.call(
        "PATCH", f"/api/v1/courses/{created['id']}", teacher, json={"is_published": True}
    )
    assert status == 200 and updated["is_published"] is True
    status, page = await world.call("GET", "/api/v1/courses?q=kemia", learner)
    assert [c["id"] for c in page["items"]] == [created["id"]]


async def test_learners_cannot_author(world: World) -> None:
    status, body = await world.call("POST", "/api/v1/courses", world.a.tokens["learner"], json=course())
    assert status == 403 and body["code"] == "permission_denied"


async def test_duplicate_slug_conflicts(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    await world.call("POST", "/api/v1/courses", teacher, json=course())
    status, body = await world.call("POST", "/api/v1/courses", teacher, json=course())
    assert status == 409 and body["code"] == "slug_taken"
    # Another school may use the same slug.
    status, _ = await world.call("POST", "/api/v1/courses", world.b.tokens["instructor"], json=course())
    assert status == 201


async def test_other_school_sees_nothing_and_cannot_touch(world: World) -> None:
    status, created = await world.call(
        "POST", "/api/v1/courses", world.a.tokens["instructor"], json=course(is_published=True)
    )
    path = f"/api/v1/courses/{created['id']}"
    for role in ("institution_admin", "instructor", "learner"):
        token = world.b.tokens[role]
        assert (await world.call("GET", path, token))[0] == 404
        assert (await world.call("GET", "/api/v1/courses", token))[1]["items"] == []
        assert (await world.call("PATCH", path, token, json={"title_en": "Hijacked"}))[0] == 404
        assert (await world.call("DELETE", path, token))[0] == 404
    status, still = await world.call("GET", path, world.a.tokens["learner"])
    assert status == 200 and still["title_en"] == "Form 3 Chemistry"


async def test_catalogue_is_shared_but_only_platform_admins_edit_it(world: World) -> None:
    status, shared = await world.call(
        "POST", "/api/v1/courses", world.platform_token, json=course("kcse-english", is_published=True)
    )
    assert status == 201 and shared["institution_id"] is None
    for school in (world.a, world.b):
        status, page = await world.call("GET", "/api/v1/courses", school.tokens["learner"])
        assert [c["id"] for c in page["items"]] == [shared["id"]]
        status, body = await world.call(
            "PATCH",
            f"/api/v1/courses/{shared['id']}",
            school.tokens["institution_admin"],
            json={"title_en": "Mine now"},
        )
        assert status == 403


async def test_pagination_walks_every_course_once(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    ids = set()
    for n in range(7):
        status, created = await world.call("POST", "/api/v1/courses", teacher, json=course(f"course-{n}"))
        ids.add(created["id"])
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await world.call("GET", f"/api/v1/courses?{query}", teacher)
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    status, body = await world.call("GET", "/api/v1/courses?cursor=@@@", teacher)
    assert status == 422
    status, body = await world.call("GET", "/api/v1/courses?limit=0", teacher)
    assert status == 422 and body["errors"][0]["loc"] == ["query", "limit"]


async def test_deleted_course_is_gone(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    status, created = await world.call("POST", "/api/v1/courses", teacher, json=course())
    assert (await world.call("DELETE", f"/api/v1/courses/{created['id']}", teacher))[0] == 204
    assert (await world.call("GET", f"/api/v1/courses/{created['id']}", teacher))[0] == 404
    assert (await world.call("GET", "/api/v1/courses/not-a-uuid", teacher))[0] == 404


async def test_nul_characters_are_refused_not_stored(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    status, body = await world.call("POST", "/api/v1/courses", teacher, json=course(title_en="a\x00b"))
    assert status == 422 and body["code"] == "nul_character" and body["field"] == "body.title_en"
    status, body = await world.call("GET", "/api/v1/courses?q=a%00b", teacher)
    assert status == 422 and body["code"] == "nul_character"
    assert (await world.call("GET", "/api/v1/courses", teacher))[1]["items"] == []


async def test_platform_admin_naming_a_missing_institution_gets_404(world: World) -> None:
    status, body = await world.call(
        "POST",
        "/api/v1/courses",
        world.platform_token,
        json=course(institution_id="00000000-0000-7000-8000-000000000001"),
    )
    assert status == 404 and body["code"] == "not_found"
