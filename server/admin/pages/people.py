"""Console pages: institutions (platform admins), users, and learners (search by phone or
name, the profiles on a shared phone, PIN reset and unlock)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lms_domain.tenancy import admin
from lms_domain.tenancy.schemas import (
    InstitutionCreate,
    InstitutionListQuery,
    InstitutionOut,
    InstitutionUpdate,
    LearnerListQuery,
    LearnerOut,
    LearnerUpdate,
    PhoneLearners,
    PinReset,
    UserCreate,
    UserListQuery,
    UserOut,
    UserUpdate,
)
from server.admin.menu import ADMINS, PLATFORM, STAFF
from server.admin.views import AdminRoutes, FormInvalid, Page, csv_response, every_page
from server.keys import hasher_key

routes = AdminRoutes()


def _form(page: Page, *names: str) -> dict[str, str]:
    """The named form fields that were filled in (an empty field means "not given")."""
    return {n: str(page.form[n]).strip() for n in names if str(page.form.get(n, "")).strip()}


# Institutions ---------------------------------------------------------------------------


@routes.get("/admin/institutions", roles=PLATFORM)
async def list_institutions(page: Page) -> web.StreamResponse:
    query = page.validate(InstitutionListQuery, _query(page, "q", "cursor"))
    async with page.read() as session:
        if page.wants_csv:

            async def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
                q = query.model_copy(update={"cursor": cursor, "limit": 200})
                found, nxt = await admin.list_institutions(session=session, actor=page.actor, query=q)
                return list(found), nxt

            every = await every_page(fetch)
            return csv_response(
                "institutions.csv",
                ["id", "name", "code", "default_language", "vat_rate_bp", "is_active", "created_at"],
                (
                    [i.id, i.name, i.code, i.default_language.value, i.vat_rate_bp, i.is_active, i.created_at]
                    for i in every
                ),
            )
        rows, cursor = await admin.list_institutions(session=session, actor=page.actor, query=query)
    items = [InstitutionOut.model_validate(r) for r in rows]
    return await page.render("admin/people/institutions.html", {"items": items, "next_cursor": cursor})


@routes.post("/admin/institutions", roles=PLATFORM)
async def create_institution(page: Page) -> web.StreamResponse:
    data = page.validate(InstitutionCreate, _form(page, "name", "code", "default_language", "unknown_phone_policy"))
    async with page.uow() as session:
        created = InstitutionOut.model_validate(
            await admin.create_institution(session=session, actor=page.actor, data=data)
        )
        await page.audit(
            session,
            action="institution.create",
            target_type="institution",
            target_id=created.id,
            institution_id=created.id,
            after=created,
        )
    page.flash(page._("Saved."))
    return await page.redirect(f"/admin/institutions/{created.id}")


@routes.get("/admin/institutions/{institution_id}", roles=PLATFORM)
async def show_institution(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        row = await admin.get_institution(
            session=session, actor=page.actor, institution_id=page.path_uuid("institution_id")
        )
        institution = InstitutionOut.model_validate(row)
    return await page.render("admin/people/institution.html", {"i": institution})


@routes.post("/admin/institutions/{institution_id}", roles=PLATFORM)
async def update_institution(page: Page) -> web.StreamResponse:
    fields: dict[str, Any] = _form(page, "name", "code", "default_language", "unknown_phone_policy")
    if "vat_rate_bp" in page.form:
        fields["vat_rate_bp"] = _int(page, "vat_rate_bp")
    fields["is_active"] = page.form.get("is_active") == "on"
    data = page.validate(InstitutionUpdate, fields)
    institution_id = page.path_uuid("institution_id")
    async with page.uow() as session:
        before = InstitutionOut.model_validate(
            await admin.get_institution(session=session, actor=page.actor, institution_id=institution_id)
        )
        after = InstitutionOut.model_validate(
            await admin.update_institution(session=session, actor=page.actor, institution_id=institution_id, data=data)
        )
        await page.audit(
            session,
            action="institution.update",
            target_type="institution",
            target_id=institution_id,
            institution_id=institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(f"/admin/institutions/{institution_id}")


# Users ----------------------------------------------------------------------------------


@routes.get("/admin/users", roles=ADMINS)
async def list_users(page: Page) -> web.StreamResponse:
    query = page.validate(UserListQuery, _query(page, "q", "role", "institution_id", "cursor"))
    async with page.read() as session:
        if page.wants_csv:

            async def fetch(cursor: str | None) -> tuple[list[Any], str | None]:
                q = query.model_copy(update={"cursor": cursor, "limit": 200})
                found, nxt = await admin.list_users(session=session, actor=page.actor, query=q)
                return list(found), nxt

            every = await every_page(fetch)
            return csv_response(
                "users.csv",
                ["id", "username", "full_name", "email", "role", "institution_id", "is_active", "last_login_at"],
                (
                    [
                        u.id,
                        u.username,
                        u.full_name,
                        u.email,
                        u.role.value,
                        u.institution_id,
                        u.is_active,
                        u.last_login_at,
                    ]
                    for u in every
                ),
            )
        rows, cursor = await admin.list_users(session=session, actor=page.actor, query=query)
    items = [UserOut.model_validate(r) for r in rows]
    return await page.render("admin/people/users.html", {"items": items, "next_cursor": cursor})


@routes.post("/admin/users", roles=ADMINS)
async def create_user(page: Page) -> web.StreamResponse:
    data = page.validate(
        UserCreate, _form(page, "username", "password", "role", "full_name", "email", "institution_id")
    )
    async with page.uow() as session:
        user = UserOut.model_validate(
            await admin.create_user(session=session, actor=page.actor, data=data, hasher=page.app[hasher_key])
        )
        await page.audit(
            session,
            action="user.create",
            target_type="user",
            target_id=user.id,
            institution_id=user.institution_id,
            after=user,
        )
    page.flash(page._("Saved."))
    return await page.redirect(f"/admin/users/{user.id}")


@routes.get("/admin/users/{user_id}", roles=ADMINS)
async def show_user(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        user = UserOut.model_validate(
            await admin.get_user(session=session, actor=page.actor, user_id=page.path_uuid("user_id"))
        )
    return await page.render("admin/people/user.html", {"u": user})


@routes.post("/admin/users/{user_id}", roles=ADMINS)
async def update_user(page: Page) -> web.StreamResponse:
    fields: dict[str, Any] = _form(page, "full_name")
    fields["email"] = str(page.form.get("email", "")).strip() or None
    fields["is_active"] = page.form.get("is_active") == "on"
    data = page.validate(UserUpdate, fields)
    user_id = page.path_uuid("user_id")
    async with page.uow() as session:
        before = UserOut.model_validate(await admin.get_user(session=session, actor=page.actor, user_id=user_id))
        after = UserOut.model_validate(
            await admin.update_user(session=session, actor=page.actor, user_id=user_id, data=data)
        )
        await page.audit(
            session,
            action="user.update",
            target_type="user",
            target_id=user_id,
            institution_id=after.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(f"/admin/users/{user_id}")


# Learners -------------------------------------------------------------------------------


@routes.get("/admin/learners", roles=STAFF)
async def list_learners(page: Page) -> web.StreamResponse:
    query = page.validate(LearnerListQuery, _query(page, "q", "cursor"))
    async with page.read() as session:
        if page.wants_csv:

            async def fetch(cursor: str | None) -> tuple[list[LearnerOut], str | None]:
                q = query.model_copy(update={"cursor": cursor, "limit": 200})
                return await admin.list_learners(session=session, actor=page.actor, query=q)

            rows = await every_page(fetch)
            return csv_response(
                "learners.csv",
                [
                    "id",
                    "display_name",
                    "phone",
                    "account_no",
                    "grade",
                    "language",
                    "has_pin",
                    "pin_locked_until",
                    "created_at",
                ],
                (
                    [
                        r.id,
                        r.display_name,
                        r.phone,
                        r.account_no,
                        r.grade,
                        r.language.value,
                        r.has_pin,
                        r.pin_locked_until,
                        r.created_at,
                    ]
                    for r in rows
                ),
            )
        items, cursor = await admin.list_learners(session=session, actor=page.actor, query=query)
    return await page.render("admin/people/learners.html", {"items": items, "next_cursor": cursor})


@routes.get("/admin/learners/{learner_id}", roles=STAFF)
async def show_learner(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        learner = await admin.get_learner(session=session, actor=page.actor, learner_id=page.path_uuid("learner_id"))
        shared = PhoneLearners(phone="", items=[])
        if learner.phone:
            shared = await admin.learners_on_phone(session=session, actor=page.actor, raw_msisdn=learner.phone)
    return await page.render(
        "admin/people/learner.html",
        {"l": learner, "shared": [p for p in shared.items if p.id != learner.id], "now": page.clock.now()},
    )


@routes.post("/admin/learners/{learner_id}", roles=STAFF)
async def update_learner(page: Page) -> web.StreamResponse:
    fields: dict[str, Any] = _form(page, "display_name", "language")
    fields["grade"] = str(page.form.get("grade", "")).strip() or None
    data = page.validate(LearnerUpdate, fields)
    learner_id = page.path_uuid("learner_id")
    async with page.uow() as session:
        before = await admin.get_learner(session=session, actor=page.actor, learner_id=learner_id)
        after = await admin.update_learner(session=session, actor=page.actor, learner_id=learner_id, data=data)
        await page.audit(
            session,
            action="learner.update",
            target_type="learner",
            target_id=learner_id,
            institution_id=after.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(f"/admin/learners/{learner_id}")


@routes.post("/admin/learners/{learner_id}/pin", roles=ADMINS)
async def reset_pin(page: Page) -> web.StreamResponse:
    pin, again = str(page.form.get("pin", "")), str(page.form.get("pin_again", ""))
    if pin != again:
        raise FormInvalid({"pin_again": page._("The two PINs differ.")})
    page.validate(PinReset, {"pin": pin})
    learner_id = page.path_uuid("learner_id")
    async with page.uow() as session:
        before = await admin.get_learner(session=session, actor=page.actor, learner_id=learner_id)
        await admin.reset_pin(
            session=session, actor=page.actor, learner_id=learner_id, pin=pin, hasher=page.app[hasher_key]
        )
        after = await admin.get_learner(session=session, actor=page.actor, learner_id=learner_id)
        # The PIN itself is never logged, only that it changed and the lockout went.
        await page.audit(
            session,
            action="learner.pin_reset",
            target_type="learner",
            target_id=learner_id,
            institution_id=after.institution_id,
            before={"has_pin": before.has_pin, "pin_locked_until": before.pin_locked_until},
            after={"has_pin": after.has_pin, "pin_locked_until": after.pin_locked_until},
        )
    page.flash(page._("The new PIN is set. Tell the learner in person or by phone, never by SMS."))
    return await page.redirect(f"/admin/learners/{learner_id}")


@routes.post("/admin/learners/{learner_id}/unlock", roles=ADMINS)
async def unlock_learner(page: Page) -> web.StreamResponse:
    learner_id = page.path_uuid("learner_id")
    async with page.uow() as session:
        before = await admin.get_learner(session=session, actor=page.actor, learner_id=learner_id)
        await admin.unlock_learner(session=session, actor=page.actor, learner_id=learner_id)
        await page.audit(
            session,
            action="learner.unlock",
            target_type="learner",
            target_id=learner_id,
            institution_id=before.institution_id,
            before={"pin_locked_until": before.pin_locked_until},
            after={"pin_locked_until": None},
        )
    page.flash(page._("The profile is unlocked."))
    return await page.redirect(f"/admin/learners/{learner_id}")


def _query(page: Page, *names: str) -> dict[str, str]:
    return {n: page.q(n) for n in names if page.q(n)}


def _int(page: Page, name: str) -> int | str:
    raw = str(page.form.get(name, "")).strip()
    # isascii: "²" and other Unicode digits pass isdigit() but not int(); pydantic refuses the text.
    return int(raw) if raw.isascii() and raw.isdecimal() and len(raw) <= 9 else raw
