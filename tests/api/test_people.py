"""Institutions, logins and learner profiles over HTTP: who may do what, and tenancy."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from lms_domain.tenancy.models import Learner
from tests.api.conftest import PASSWORD, School, World
from tests.conftest import T0
from tests.factories import FAST_HASHER

ROLES = ("institution_admin", "instructor", "learner")
STAFF = ("institution_admin", "instructor")


def institution(code: str = "KISUMU1", **extra: object) -> dict[str, object]:
    return {"name": "Kisumu Day School", "code": code, **extra}


def learner(name: str = "Achieng Otieno", **extra: object) -> dict[str, object]:
    return {"display_name": name, **extra}


async def my_id(world: World, token: str) -> str:
    status, me = await world.call("GET", "/api/v1/me", token)
    assert status == 200
    return str(me["id"])


async def make_learner(world: World, school: School, **extra: object) -> dict[str, Any]:
    status, body = await world.call("POST", "/api/v1/learners", school.tokens["instructor"], json=learner(**extra))
    assert status == 201, body
    return dict(body)


async def stored_learner(world: World, learner_id: str) -> Learner:
    async with world.makers() as session:
        row = await session.get(Learner, uuid.UUID(learner_id))
        assert row is not None
        return row


# Institutions ---------------------------------------------------------------------------


async def test_platform_admin_registers_and_changes_institutions(world: World) -> None:
    root = world.platform_token
    status, created = await world.call(
        "POST", "/api/v1/institutions", root, json=institution(code="kisumu1", vat_rate_bp=0, default_language="sw")
    )
    assert status == 201
    assert created["code"] == "KISUMU1" and created["vat_rate_bp"] == 0 and created["default_language"] == "sw"
    assert created["unknown_phone_policy"] == "register"
    status, body = await world.call("POST", "/api/v1/institutions", root, json=institution(code="Kisumu1"))
    assert status == 409 and body["code"] == "institution_code_taken"
    status, body = await world.call("POST", "/api/v1/institutions", root, json=institution(vat_rate_bp=10_001))
    assert status == 422 and body["errors"][0]["loc"] == ["body", "vat_rate_bp"]

    path = f"/api/v1/institutions/{created['id']}"
    status, changed = await world.call(
        "PATCH", path, root, json={"name": "  Kisumu   Girls ", "unknown_phone_policy": "ask_school"}
    )
    assert status == 200 and changed["name"] == "Kisumu Girls" and changed["unknown_phone_policy"] == "ask_school"
    status, body = await world.call("PATCH", path, root, json={"code": world.a.institution.code})
    assert status == 409
    status, fetched = await world.call("GET", path, root)
    assert status == 200 and fetched["name"] == "Kisumu Girls" and fetched["code"] == "KISUMU1"

    status, page = await world.call("GET", "/api/v1/institutions?q=girls", root)
    assert [i["id"] for i in page["items"]] == [created["id"]]
    status, page = await world.call("GET", f"/api/v1/institutions?q={world.b.institution.code.lower()}", root)
    assert [i["id"] for i in page["items"]] == [str(world.b.institution.id)]
    status, page = await world.call("GET", "/api/v1/institutions?limit=2", root)
    assert len(page["items"]) == 2 and page["next_cursor"]
    assert (await world.call("GET", "/api/v1/institutions/not-a-uuid", root))[0] == 404
    assert (await world.call("GET", f"/api/v1/institutions/{uuid.uuid4()}", root))[0] == 404


async def test_only_platform_admins_manage_institutions(world: World) -> None:
    path = f"/api/v1/institutions/{world.a.institution.id}"
    for school in (world.a, world.b):
        for role in ROLES:
            token = school.tokens[role]
            assert (await world.call("GET", "/api/v1/institutions", token))[0] == 403
            assert (await world.call("POST", "/api/v1/institutions", token, json=institution()))[0] == 403
            assert (await world.call("GET", path, token))[0] == 403
            assert (await world.call("PATCH", path, token, json={"name": "Hijacked"}))[0] == 403
    status, body = await world.call("GET", path, world.platform_token)
    assert body["name"] == "Alpha School"


async def test_everyone_sees_their_own_institution(world: World) -> None:
    for school in (world.a, world.b):
        for role in ROLES:
            status, body = await world.call("GET", "/api/v1/institution", school.tokens[role])
            assert status == 200 and body["id"] == str(school.institution.id)
    status, body = await world.call("GET", "/api/v1/institution", world.platform_token)
    assert status == 404


# Users ----------------------------------------------------------------------------------


async def test_institution_admin_creates_and_lists_their_logins(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    status, created = await world.call(
        "POST",
        "/api/v1/users",
        admin,
        json={"username": "Mwalimu.Njeri", "password": "long-enough", "role": "instructor", "full_name": "Njeri W"},
    )
    assert status == 201
    assert created["username"] == "mwalimu.njeri" and created["institution_id"] == str(world.a.institution.id)
    assert "password_hash" not in created and "password" not in created
    status, token = await world.call(
        "POST", "/api/v1/auth/token", json={"login": "mwalimu.njeri", "password": "long-enough"}
    )
    assert status == 200

    status, page = await world.call("GET", "/api/v1/users", admin)
    assert {u["institution_id"] for u in page["items"]} == {str(world.a.institution.id)}
    assert len(page["items"]) == 4 and all("password_hash" not in u for u in page["items"])
    status, page = await world.call("GET", "/api/v1/users?q=njeri", admin)
    assert [u["id"] for u in page["items"]] == [created["id"]]
    status, page = await world.call("GET", "/api/v1/users?role=learner", admin)
    assert [u["role"] for u in page["items"]] == ["learner"]
    # Asking for another school's logins only narrows the admin's own list.
    status, page = await world.call("GET", f"/api/v1/users?institution_id={world.b.institution.id}", admin)
    assert page["items"] == []

    status, body = await world.call(
        "POST", "/api/v1/users", admin, json={"username": "MWALIMU.njeri", "password": "long-enough", "role": "learner"}
    )
    assert status == 409 and body["code"] == "username_taken"
    status, body = await world.call(
        "POST", "/api/v1/users", admin, json={"username": "short-pass", "password": "1234567", "role": "learner"}
    )
    assert status == 422 and body["errors"][0]["loc"] == ["body", "password"]
    status, body = await world.call(
        "POST", "/api/v1/users", admin, json={"username": "0711000001", "password": "long-enough", "role": "learner"}
    )
    assert status == 422  # would shadow logins by phone


async def test_institution_admin_cannot_mint_platform_admins_or_reach_other_schools(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    new = {"username": "sneaky", "password": "long-enough"}
    status, body = await world.call("POST", "/api/v1/users", admin, json={**new, "role": "platform_admin"})
    assert status == 403
    status, body = await world.call(
        "POST",
        "/api/v1/users",
        admin,
        json={**new, "role": "instructor", "institution_id": str(world.b.institution.id)},
    )
    assert status == 404
    for role in ("instructor", "learner"):
        token = world.a.tokens[role]
        assert (await world.call("GET", "/api/v1/users", token))[0] == 403
        assert (await world.call("POST", "/api/v1/users", token, json={**new, "role": "learner"}))[0] == 403
    status, page = await world.call("GET", "/api/v1/users?q=sneaky", world.platform_token)
    assert page["items"] == []


async def test_platform_admin_creates_any_role(world: World) -> None:
    root = world.platform_token
    status, other_root = await world.call(
        "POST", "/api/v1/users", root, json={"username": "root2", "password": "long-enough", "role": "platform_admin"}
    )
    assert status == 201 and other_root["institution_id"] is None
    status, body = await world.call(
        "POST", "/api/v1/users", root, json={"username": "nowhere", "password": "long-enough", "role": "instructor"}
    )
    assert status == 422 and body["code"] == "role_tenancy"
    status, teacher = await world.call(
        "POST",
        "/api/v1/users",
        root,
        json={
            "username": "beta-teacher",
            "password": "long-enough",
            "role": "instructor",
            "institution_id": str(world.b.institution.id),
        },
    )
    assert status == 201 and teacher["institution_id"] == str(world.b.institution.id)
    status, page = await world.call("GET", f"/api/v1/users?institution_id={world.b.institution.id}", root)
    assert len(page["items"]) == 4 and teacher["id"] in {u["id"] for u in page["items"]}
    status, page = await world.call("GET", "/api/v1/users?role=platform_admin", root)
    assert {u["username"] for u in page["items"]} == {"root", "root2"}


async def test_users_of_another_school_are_invisible(world: World) -> None:
    a_teacher_id = await my_id(world, world.a.tokens["instructor"])
    root_id = await my_id(world, world.platform_token)
    path = f"/api/v1/users/{a_teacher_id}"
    for role in ROLES:
        token = world.b.tokens[role]
        assert (await world.call("GET", path, token))[0] == 404
        assert (await world.call("PATCH", path, token, json={"full_name": "Hijacked"}))[0] == 404
        status, page = await world.call("GET", "/api/v1/users?q=instructor", world.b.tokens["institution_admin"])
        assert a_teacher_id not in {u["id"] for u in page["items"]}
    # Platform admins' logins are no school's business.
    assert (await world.call("GET", f"/api/v1/users/{root_id}", world.a.tokens["institution_admin"]))[0] == 404
    status, body = await world.call("GET", path, world.a.tokens["institution_admin"])
    assert status == 200 and body["full_name"] == ""


async def test_users_read_themselves_but_only_admins_read_others(world: World) -> None:
    teacher = world.a.tokens["instructor"]
    teacher_id = await my_id(world, teacher)
    admin_id = await my_id(world, world.a.tokens["institution_admin"])
    assert (await world.call("GET", f"/api/v1/users/{teacher_id}", teacher))[0] == 200
    assert (await world.call("GET", f"/api/v1/users/{admin_id}", teacher))[0] == 403
    assert (await world.call("GET", f"/api/v1/users/{admin_id}", world.a.tokens["learner"]))[0] == 403
    assert (await world.call("PATCH", f"/api/v1/users/{teacher_id}", teacher, json={"full_name": "Me"}))[0] == 403
    assert (await world.call("GET", "/api/v1/users/not-a-uuid", teacher))[0] == 404


async def test_admin_changes_and_deactivates_logins_but_not_themself(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    status, me = await world.call("GET", "/api/v1/me", admin)
    status, teacher = await world.call("GET", "/api/v1/me", world.a.tokens["instructor"])
    path = f"/api/v1/users/{teacher['id']}"
    status, body = await world.call(
        "PATCH", path, admin, json={"full_name": "Mr  Kamau", "email": "kamau@alpha.example"}
    )
    assert status == 200 and body["full_name"] == "Mr Kamau" and body["email"] == "kamau@alpha.example"
    status, body = await world.call("PATCH", path, admin, json={"email": None})
    assert status == 200 and body["email"] is None and body["full_name"] == "Mr Kamau"
    status, body = await world.call("PATCH", path, admin, json={"email": "not an email"})
    assert status == 422
    status, body = await world.call("PATCH", path, admin, json={"is_active": False})
    assert status == 200 and body["is_active"] is False
    status, body = await world.call(
        "POST", "/api/v1/auth/token", json={"login": teacher["username"], "password": PASSWORD}
    )
    assert status == 401
    status, body = await world.call("PATCH", f"/api/v1/users/{me['id']}", admin, json={"is_active": False})
    assert status == 409 and body["code"] == "cannot_deactivate_self"
    status, body = await world.call("PATCH", f"/api/v1/users/{me['id']}", admin, json={"full_name": "Head"})
    assert status == 200 and body["is_active"] is True


async def test_me_shows_the_login_and_its_learner_profile(world: World) -> None:
    status, me = await world.call("GET", "/api/v1/me", world.a.tokens["learner"])
    assert status == 200 and me["role"] == "learner" and me["learner_id"] == str(world.a.learner.id)
    assert me["institution_id"] == str(world.a.institution.id) and "password_hash" not in me
    status, me = await world.call("GET", "/api/v1/me", world.b.tokens["instructor"])
    assert me["learner_id"] is None and me["institution_id"] == str(world.b.institution.id)
    status, me = await world.call("GET", "/api/v1/me", world.platform_token)
    assert me["username"] == "root" and me["institution_id"] is None
    assert (await world.call("GET", "/api/v1/me"))[0] == 401


# Learner profiles -----------------------------------------------------------------------


async def test_staff_register_learners_and_find_them_by_name_or_phone(world: World) -> None:
    created = await make_learner(world, world.a, phone="0722 000 111", language="sw", pin="4321", grade="Form 2")
    assert created["phone"] == "+254722000111" and created["language"] == "sw" and created["grade"] == "Form 2"
    assert created["has_pin"] is True and created["pin_locked_until"] is None
    assert created["institution_id"] == str(world.a.institution.id) and len(created["account_no"]) == 10
    assert "pin_hash" not in created and "pin" not in created
    no_phone = await make_learner(world, world.a, name="Kipchoge  Ruto")
    assert no_phone["phone"] is None and no_phone["has_pin"] is False and no_phone["display_name"] == "Kipchoge Ruto"

    teacher = world.a.tokens["instructor"]
    for typed in ("0722000111", "254722000111", "%2B254722000111", "0722", "achieng"):
        status, page = await world.call("GET", f"/api/v1/learners?q={typed}", teacher)
        assert status == 200 and [x["id"] for x in page["items"]] == [created["id"]], typed
    status, page = await world.call("GET", "/api/v1/learners", world.a.tokens["institution_admin"])
    assert {x["id"] for x in page["items"]} == {created["id"], no_phone["id"], str(world.a.learner.id)}
    status, page = await world.call("GET", "/api/v1/learners?q=100%25", teacher)
    assert page["items"] == []  # % is a character, not a wildcard

    status, body = await world.call("POST", "/api/v1/learners", teacher, json=learner(phone="12345"))
    assert status == 422 and body["code"] == "invalid_phone"
    status, body = await world.call("POST", "/api/v1/learners", teacher, json=learner(pin="12a4"))
    assert status == 422
    status, body = await world.call("POST", "/api/v1/learners", teacher, json=learner(language="fr"))
    assert status == 422
    status, body = await world.call("POST", "/api/v1/learners", teacher, json=learner(name="bad\x00name"))
    assert status == 422


async def test_learner_pagination_walks_every_profile_once(world: World) -> None:
    ids = {str(world.a.learner.id)}
    for n in range(6):
        ids.add((await make_learner(world, world.a, name=f"Learner {n}"))["id"])
    seen: list[str] = []
    cursor = None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, page = await world.call("GET", f"/api/v1/learners?{query}", world.a.tokens["instructor"])
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


async def test_learners_cannot_manage_profiles(world: World) -> None:
    token = world.a.tokens["learner"]
    assert (await world.call("GET", "/api/v1/learners", token))[0] == 403
    assert (await world.call("POST", "/api/v1/learners", token, json=learner()))[0] == 403
    assert (await world.call("GET", "/api/v1/phones/0711000001/learners", token))[0] == 403
    path = f"/api/v1/learners/{world.a.learner.id}"
    assert (await world.call("POST", f"{path}/pin-reset", token, json={"pin": "9999"}))[0] == 403
    assert (await world.call("POST", f"{path}/unlock", token))[0] == 403


async def test_learner_profiles_of_another_school_are_invisible(world: World) -> None:
    path = f"/api/v1/learners/{world.a.learner.id}"
    for role in ROLES:
        token = world.b.tokens[role]
        assert (await world.call("GET", path, token))[0] == 404
        assert (await world.call("PATCH", path, token, json={"display_name": "Hijacked"}))[0] == 404
    for role in STAFF:
        token = world.b.tokens[role]
        status, page = await world.call("GET", "/api/v1/learners?q=0711000001", token)
        assert status == 200 and page["items"] == []
        status, page = await world.call("GET", "/api/v1/learners", token)
        assert [x["id"] for x in page["items"]] == [str(world.b.learner.id)]
        status, body = await world.call(
            "POST", "/api/v1/learners", token, json=learner(institution_id=str(world.a.institution.id))
        )
        assert status == 404
    admin_b = world.b.tokens["institution_admin"]
    assert (await world.call("POST", f"{path}/pin-reset", admin_b, json={"pin": "9999"}))[0] == 404
    assert (await world.call("POST", f"{path}/unlock", admin_b))[0] == 404
    status, body = await world.call("GET", path, world.a.tokens["instructor"])
    assert status == 200 and body["display_name"] == "Learner Alpha School"


async def test_learner_reads_and_edits_only_their_own_profile(world: World) -> None:
    token = world.a.tokens["learner"]
    own = f"/api/v1/learners/{world.a.learner.id}"
    status, me = await world.call("GET", "/api/v1/learners/me", token)
    assert status == 200 and me["id"] == str(world.a.learner.id) and me["phone"] == "+254711000001"
    assert me["has_pin"] is True
    status, body = await world.call("GET", own, token)
    assert status == 200 and body == me
    status, body = await world.call("PATCH", own, token, json={"display_name": "Amina Hassan", "language": "sw"})
    assert status == 200 and body["display_name"] == "Amina Hassan" and body["language"] == "sw"
    status, body = await world.call("PATCH", own, token, json={"grade": "Form 4"})
    assert status == 403
    status, body = await world.call("PATCH", "/api/v1/learners/me", token, json={"language": "en"})
    assert status == 200 and body["language"] == "en" and body["display_name"] == "Amina Hassan"
    assert (await world.call("PATCH", "/api/v1/learners/me", token, json={"grade": "Form 4"}))[0] == 403
    classmate = await make_learner(world, world.a)
    assert (await world.call("GET", f"/api/v1/learners/{classmate['id']}", token))[0] == 403
    status, _ = await world.call("PATCH", f"/api/v1/learners/{classmate['id']}", token, json={"language": "sw"})
    assert status == 403
    status, me_b = await world.call("GET", "/api/v1/learners/me", world.b.tokens["learner"])
    assert me_b["id"] == str(world.b.learner.id)
    # Staff logins have no learner profile.
    assert (await world.call("GET", "/api/v1/learners/me", world.a.tokens["instructor"]))[0] == 403
    assert (await world.call("PATCH", "/api/v1/learners/me", world.a.tokens["instructor"], json={}))[0] == 403


async def test_staff_edit_any_field_of_their_learners(world: World) -> None:
    created = await make_learner(world, world.a, grade="Form 1")
    path = f"/api/v1/learners/{created['id']}"
    status, body = await world.call(
        "PATCH", path, world.a.tokens["instructor"], json={"grade": "Form 2", "language": "sw"}
    )
    assert status == 200 and body["grade"] == "Form 2" and body["language"] == "sw"
    status, body = await world.call("PATCH", path, world.a.tokens["institution_admin"], json={"grade": None})
    assert status == 200 and body["grade"] is None and body["display_name"] == "Achieng Otieno"
    status, body = await world.call("PATCH", path, world.a.tokens["institution_admin"], json={"display_name": ""})
    assert status == 422


async def test_admin_resets_pin_and_lifts_lockout(world: World) -> None:
    locked = await make_learner(world, world.a, pin="1111")
    async with world.makers() as session, session.begin():
        await session.execute(
            sa.update(Learner)
            .where(Learner.id == uuid.UUID(locked["id"]))
            .values(pin_failed_count=3, pin_locked_until=T0 + timedelta(minutes=30))
        )
    path = f"/api/v1/learners/{locked['id']}"
    status, body = await world.call("GET", path, world.a.tokens["instructor"])
    assert body["pin_locked_until"] is not None
    assert (await world.call("POST", f"{path}/pin-reset", world.a.tokens["instructor"], json={"pin": "2222"}))[0] == 403
    assert (await world.call("POST", f"{path}/pin-reset", world.a.tokens["institution_admin"], json={"pin": "22"}))[
        0
    ] == 422
    status, _ = await world.call("POST", f"{path}/pin-reset", world.a.tokens["institution_admin"], json={"pin": "2222"})
    assert status == 204
    row = await stored_learner(world, locked["id"])
    assert row.pin_failed_count == 0 and row.pin_locked_until is None and row.pin_hash is not None
    assert FAST_HASHER.verify(row.pin_hash, "2222") and not FAST_HASHER.verify(row.pin_hash, "1111")

    async with world.makers() as session, session.begin():
        await session.execute(
            sa.update(Learner)
            .where(Learner.id == uuid.UUID(locked["id"]))
            .values(pin_failed_count=3, pin_locked_until=T0 + timedelta(minutes=30))
        )
    assert (await world.call("POST", f"{path}/unlock", world.a.tokens["instructor"]))[0] == 403
    assert (await world.call("POST", f"{path}/unlock", world.platform_token))[0] == 204
    row = await stored_learner(world, locked["id"])
    assert row.pin_failed_count == 0 and row.pin_locked_until is None
    assert FAST_HASHER.verify(row.pin_hash or "", "2222")  # unlocking keeps the PIN


async def test_shared_phone_lists_only_the_callers_learners(world: World) -> None:
    sibling = await make_learner(world, world.a, name="Baraka", phone="+254711000001")
    other_school = await make_learner(world, world.b, name="Zawadi", phone="254711000001")
    for typed in ("0711000001", "+254711000001", "254711000001"):
        status, body = await world.call("GET", f"/api/v1/phones/{typed}/learners", world.a.tokens["instructor"])
        assert status == 200 and body["phone"] == "+254711000001"
        assert [x["id"] for x in body["items"]] == [sibling["id"], str(world.a.learner.id)]
    status, body = await world.call("GET", "/api/v1/phones/0711000001/learners", world.b.tokens["institution_admin"])
    assert [x["id"] for x in body["items"]] == [other_school["id"]]
    status, body = await world.call("GET", "/api/v1/phones/0711000002/learners", world.a.tokens["institution_admin"])
    assert status == 200 and body["items"] == []  # school b's number: nothing to see
    status, body = await world.call("GET", "/api/v1/phones/not-a-phone/learners", world.a.tokens["instructor"])
    assert status == 404 and body["code"] == "invalid_phone"
    status, body = await world.call("GET", "/api/v1/phones/0711000001/learners", world.platform_token)
    assert len(body["items"]) == 3


async def test_linking_a_login_to_a_profile(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    status, login = await world.call(
        "POST", "/api/v1/users", admin, json={"username": "wanjiru", "password": "long-enough", "role": "learner"}
    )
    status, linked = await world.call("POST", "/api/v1/learners", admin, json=learner("Wanjiru", user_id=login["id"]))
    assert status == 201
    status, again = await world.call("POST", "/api/v1/learners", admin, json=learner("Again", user_id=login["id"]))
    assert status == 409 and again["code"] == "user_already_linked"
    teacher_id = await my_id(world, world.a.tokens["instructor"])
    status, body = await world.call("POST", "/api/v1/learners", admin, json=learner(user_id=teacher_id))
    assert status == 422 and body["code"] == "user_not_learner"
    b_learner_login = await my_id(world, world.b.tokens["learner"])
    status, body = await world.call("POST", "/api/v1/learners", admin, json=learner(user_id=b_learner_login))
    assert status == 404
    token = (await world.call("POST", "/api/v1/auth/token", json={"login": "wanjiru", "password": "long-enough"}))[1][
        "access_token"
    ]
    status, me = await world.call("GET", "/api/v1/learners/me", token)
    assert status == 200 and me["id"] == linked["id"]


async def test_platform_admin_registers_learners_for_a_named_school(world: World) -> None:
    root = world.platform_token
    status, body = await world.call("POST", "/api/v1/learners", root, json=learner())
    assert status == 422 and body["code"] == "institution_required"
    status, body = await world.call(
        "POST", "/api/v1/learners", root, json=learner(institution_id=str(world.b.institution.id))
    )
    assert status == 201 and body["institution_id"] == str(world.b.institution.id)
    status, body = await world.call("POST", "/api/v1/learners", root, json=learner(institution_id=str(uuid.uuid4())))
    assert status == 404


async def test_soft_deleted_learners_are_invisible(world: World) -> None:
    gone = await make_learner(world, world.a, name="Gone", phone="0733000444")
    async with world.makers() as session, session.begin():
        await session.execute(sa.update(Learner).where(Learner.id == uuid.UUID(gone["id"])).values(deleted_at=T0))
    admin = world.a.tokens["institution_admin"]
    path = f"/api/v1/learners/{gone['id']}"
    assert (await world.call("GET", path, admin))[0] == 404
    assert (await world.call("PATCH", path, admin, json={"grade": "Form 1"}))[0] == 404
    assert (await world.call("POST", f"{path}/unlock", admin))[0] == 404
    assert (await world.call("GET", "/api/v1/learners?q=gone", admin))[1]["items"] == []
    assert (await world.call("GET", "/api/v1/phones/0733000444/learners", admin))[1]["items"] == []
    assert (await world.call("GET", "/api/v1/learners/not-a-uuid", admin))[0] == 404
