"""Institutions (platform admins), users and learner profiles."""

from __future__ import annotations

from typing import Any

from lms_domain.tenancy import admin
from lms_domain.tenancy.models import Role
from lms_domain.tenancy.schemas import (
    InstitutionCreate,
    InstitutionListQuery,
    InstitutionOut,
    InstitutionPage,
    InstitutionUpdate,
    LearnerCreate,
    LearnerListQuery,
    LearnerOut,
    LearnerPage,
    LearnerUpdate,
    MeOut,
    PhoneLearners,
    PinReset,
    UserCreate,
    UserListQuery,
    UserOut,
    UserPage,
    UserUpdate,
)
from server.api.registry import Api, Call
from server.keys import hasher_key

api = Api("people", description="Institutions (platform admins), users and learner profiles.")

PLATFORM = frozenset({Role.PLATFORM_ADMIN})
ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})
STAFF = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN, Role.INSTRUCTOR})
# Operations on one user or learner leave the role check to the service, which makes it
# after the tenant check: another school's row then answers 404 to every caller.


# Institutions ---------------------------------------------------------------------------


@api.get(
    "/institutions", summary="List institutions", query=InstitutionListQuery, response=InstitutionPage, auth=PLATFORM
)
async def list_institutions(call: Call[Any, InstitutionListQuery]) -> InstitutionPage:
    async with call.read() as session:
        rows, cursor = await admin.list_institutions(session=session, actor=call.actor, query=call.query)
        return InstitutionPage(items=[InstitutionOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post(
    "/institutions",
    summary="Register an institution",
    body=InstitutionCreate,
    response=InstitutionOut,
    status=201,
    auth=PLATFORM,
)
async def create_institution(call: Call[InstitutionCreate, Any]) -> InstitutionOut:
    """409 when the code is taken: learners type it to join, so it must be unique."""
    async with call.uow() as session:
        institution = await admin.create_institution(session=session, actor=call.actor, data=call.body)
        return InstitutionOut.model_validate(institution)


@api.get("/institutions/{institution_id}", summary="Get an institution", response=InstitutionOut, auth=PLATFORM)
async def get_institution(call: Call[Any, Any]) -> InstitutionOut:
    async with call.read() as session:
        institution = await admin.get_institution(
            session=session, actor=call.actor, institution_id=call.path_uuid("institution_id")
        )
        return InstitutionOut.model_validate(institution)


@api.patch(
    "/institutions/{institution_id}",
    summary="Change an institution",
    body=InstitutionUpdate,
    response=InstitutionOut,
    auth=PLATFORM,
)
async def update_institution(call: Call[InstitutionUpdate, Any]) -> InstitutionOut:
    async with call.uow() as session:
        institution = await admin.update_institution(
            session=session, actor=call.actor, institution_id=call.path_uuid("institution_id"), data=call.body
        )
        return InstitutionOut.model_validate(institution)


@api.get("/institution", summary="The caller's own institution", response=InstitutionOut)
async def get_own_institution(call: Call[Any, Any]) -> InstitutionOut:
    """404 for platform admins, who belong to no institution."""
    async with call.read() as session:
        return InstitutionOut.model_validate(await admin.own_institution(session=session, actor=call.actor))


# Users ----------------------------------------------------------------------------------


@api.get("/users", summary="List logins", query=UserListQuery, response=UserPage, auth=ADMINS)
async def list_users(call: Call[Any, UserListQuery]) -> UserPage:
    """Institution admins see their own institution's logins; platform admins see all."""
    async with call.read() as session:
        rows, cursor = await admin.list_users(session=session, actor=call.actor, query=call.query)
        return UserPage(items=[UserOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.post("/users", summary="Create a login", body=UserCreate, response=UserOut, status=201, auth=ADMINS)
async def create_user(call: Call[UserCreate, Any]) -> UserOut:
    """Institution admins create admins, instructors and learners of their own institution;
    only platform admins create platform admins."""
    async with call.uow() as session:
        user = await admin.create_user(session=session, actor=call.actor, data=call.body, hasher=call.app[hasher_key])
        return UserOut.model_validate(user)


@api.get("/me", summary="The caller's own login", response=MeOut)
async def get_me(call: Call[Any, Any]) -> MeOut:
    async with call.read() as session:
        user, learner_id = await admin.me(session=session, actor=call.actor)
        return MeOut.model_validate({**UserOut.model_validate(user).model_dump(), "learner_id": learner_id})


@api.get("/users/{user_id}", summary="Get a login", response=UserOut)
async def get_user(call: Call[Any, Any]) -> UserOut:
    """Admins see their institution's logins; anyone may read their own."""
    async with call.read() as session:
        user = await admin.get_user(session=session, actor=call.actor, user_id=call.path_uuid("user_id"))
        return UserOut.model_validate(user)


@api.patch("/users/{user_id}", summary="Change a login", body=UserUpdate, response=UserOut)
async def update_user(call: Call[UserUpdate, Any]) -> UserOut:
    async with call.uow() as session:
        user = await admin.update_user(
            session=session, actor=call.actor, user_id=call.path_uuid("user_id"), data=call.body
        )
        return UserOut.model_validate(user)


# Learner profiles -----------------------------------------------------------------------


@api.get("/learners", summary="List learner profiles", query=LearnerListQuery, response=LearnerPage, auth=STAFF)
async def list_learners(call: Call[Any, LearnerListQuery]) -> LearnerPage:
    """``q`` matches the display name, or a phone number typed as 07.., 254.. or +254..."""
    async with call.read() as session:
        items, cursor = await admin.list_learners(session=session, actor=call.actor, query=call.query)
        return LearnerPage(items=items, next_cursor=cursor)


@api.post("/learners", summary="Register a learner", body=LearnerCreate, response=LearnerOut, status=201, auth=STAFF)
async def create_learner(call: Call[LearnerCreate, Any]) -> LearnerOut:
    async with call.uow() as session:
        return await admin.create_learner(
            session=session, actor=call.actor, data=call.body, hasher=call.app[hasher_key]
        )


# Declared before /learners/{learner_id} so "me" is never read as an id.
@api.get("/learners/me", summary="The caller's own learner profile", response=LearnerOut)
async def get_own_learner(call: Call[Any, Any]) -> LearnerOut:
    async with call.read() as session:
        return await admin.own_learner(session=session, actor=call.actor)


@api.patch("/learners/me", summary="Change the caller's own learner profile", body=LearnerUpdate, response=LearnerOut)
async def update_own_learner(call: Call[LearnerUpdate, Any]) -> LearnerOut:
    """A learner may change their name and language; the grade is the school's."""
    async with call.uow() as session:
        return await admin.update_learner(
            session=session, actor=call.actor, learner_id=call.actor.own_learner_id(), data=call.body
        )


@api.get("/learners/{learner_id}", summary="Get a learner profile", response=LearnerOut)
async def get_learner(call: Call[Any, Any]) -> LearnerOut:
    """Staff of the learner's institution, or the learner through their own login."""
    async with call.read() as session:
        return await admin.get_learner(session=session, actor=call.actor, learner_id=call.path_uuid("learner_id"))


@api.patch("/learners/{learner_id}", summary="Change a learner profile", body=LearnerUpdate, response=LearnerOut)
async def update_learner(call: Call[LearnerUpdate, Any]) -> LearnerOut:
    """Learners may change their own name and language; the grade is the school's."""
    async with call.uow() as session:
        return await admin.update_learner(
            session=session, actor=call.actor, learner_id=call.path_uuid("learner_id"), data=call.body
        )


@api.post("/learners/{learner_id}/pin-reset", summary="Set a new USSD PIN", body=PinReset, status=204)
async def reset_learner_pin(call: Call[PinReset, Any]) -> None:
    """Also lifts any lockout from wrong PINs."""
    async with call.uow() as session:
        await admin.reset_pin(
            session=session,
            actor=call.actor,
            learner_id=call.path_uuid("learner_id"),
            pin=call.body.pin,
            hasher=call.app[hasher_key],
        )


@api.post("/learners/{learner_id}/unlock", summary="Lift a PIN lockout", status=204)
async def unlock_learner(call: Call[Any, Any]) -> None:
    async with call.uow() as session:
        await admin.unlock_learner(session=session, actor=call.actor, learner_id=call.path_uuid("learner_id"))


@api.get("/phones/{phone}/learners", summary="Learner profiles on one phone", response=PhoneLearners, auth=STAFF)
async def list_phone_learners(call: Call[Any, Any]) -> PhoneLearners:
    """A parent's phone may hold several profiles; only the caller's institution's are
    listed. The phone may be typed in any local format."""
    async with call.read() as session:
        return await admin.learners_on_phone(
            session=session, actor=call.actor, raw_msisdn=call.request.match_info["phone"]
        )
