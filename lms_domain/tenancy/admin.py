"""Managing institutions, logins and learner profiles, as staff and learners see them.

Every query here is scoped to the actor's institution (``lms_domain.access``). Phones are
a global table, so a phone is only ever looked at through the learners of the actor's
institution: a school must not learn which numbers another school has registered.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible, owning_institution, tenant_filter
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lms_domain.pagination import paginate
from lms_domain.phones import normalize_msisdn
from lms_domain.security import Hasher, check_pin_format
from lms_domain.tenancy import service
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User
from lms_domain.tenancy.schemas import (
    InstitutionCreate,
    InstitutionListQuery,
    InstitutionUpdate,
    LearnerCreate,
    LearnerListQuery,
    LearnerOut,
    LearnerUpdate,
    PhoneLearners,
    UserCreate,
    UserListQuery,
    UserUpdate,
)

# Roles an institution admin may hand out; only platform admins mint platform admins.
INSTITUTION_GRANTABLE_ROLES = frozenset({Role.INSTITUTION_ADMIN, Role.INSTRUCTOR, Role.LEARNER})
# Fewer digits than this match too many numbers to be a useful phone search.
MIN_PHONE_FRAGMENT_DIGITS = 4


def _contains(column: Any, text: str) -> sa.ColumnElement[bool]:
    """Case-insensitive substring match that treats % and _ in ``text`` literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return sa.func.lower(column).like(f"%{escaped}%", escape="\\")


def _clean_name(raw: str, *, code: str) -> str:
    """Collapse runs of whitespace, so names line up on narrow USSD screens."""
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput("a name needs at least one visible character", code=code)
    return name


# Institutions ---------------------------------------------------------------------------


async def _institution(session: AsyncSession, institution_id: uuid.UUID) -> Institution:
    institution = await session.get(Institution, institution_id)
    if institution is None or institution.deleted_at is not None:
        raise NotFound("institution not found")
    return institution


async def _code_taken(session: AsyncSession, code: str, exclude: uuid.UUID) -> bool:
    stmt = sa.select(Institution.id).where(Institution.code == code, Institution.id != exclude)
    return (await session.scalar(stmt.limit(1))) is not None


async def list_institutions(
    *, session: AsyncSession, actor: Actor, query: InstitutionListQuery
) -> tuple[Sequence[Institution], str | None]:
    actor.require(Role.PLATFORM_ADMIN)
    stmt = sa.select(Institution).where(Institution.deleted_at.is_(None))
    if query.q:
        stmt = stmt.where(sa.or_(_contains(Institution.name, query.q), _contains(Institution.code, query.q)))
    return await paginate(session, stmt, Institution.id, cursor=query.cursor, limit=query.limit)


async def get_institution(*, session: AsyncSession, actor: Actor, institution_id: uuid.UUID) -> Institution:
    actor.require(Role.PLATFORM_ADMIN)
    return await _institution(session, institution_id)


async def own_institution(*, session: AsyncSession, actor: Actor) -> Institution:
    """The caller's school; platform admins belong to none."""
    if actor.institution_id is None:
        raise NotFound("this login belongs to no institution")
    return await _institution(session, actor.institution_id)


async def create_institution(*, session: AsyncSession, actor: Actor, data: InstitutionCreate) -> Institution:
    actor.require(Role.PLATFORM_ADMIN)
    institution = await service.create_institution(
        session=session, name=_clean_name(data.name, code="invalid_institution_name"), code=data.code
    )
    institution.default_language = data.default_language
    institution.vat_rate_bp = data.vat_rate_bp
    institution.unknown_phone_policy = data.unknown_phone_policy
    await session.flush()
    return institution


async def update_institution(
    *, session: AsyncSession, actor: Actor, institution_id: uuid.UUID, data: InstitutionUpdate
) -> Institution:
    actor.require(Role.PLATFORM_ADMIN)
    institution = await _institution(session, institution_id)
    changes = {name: value for name, value in data.model_dump(exclude_unset=True).items() if value is not None}
    if "name" in changes:
        changes["name"] = _clean_name(changes["name"], code="invalid_institution_name")
    if "code" in changes:
        changes["code"] = changes["code"].upper()
        if await _code_taken(session, changes["code"], institution.id):
            raise Conflict(f"institution code {changes['code']} is taken", code="institution_code_taken")
    for name, value in changes.items():
        setattr(institution, name, value)
    await session.flush()
    return institution


# Users ----------------------------------------------------------------------------------


async def _visible_user(session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    ensure_visible(user, actor, what="user")
    assert user is not None
    return user


async def list_users(*, session: AsyncSession, actor: Actor, query: UserListQuery) -> tuple[Sequence[User], str | None]:
    actor.require_admin()
    stmt = tenant_filter(sa.select(User).where(User.deleted_at.is_(None)), User.institution_id, actor)
    if query.institution_id is not None:
        stmt = stmt.where(User.institution_id == query.institution_id)
    if query.role is not None:
        stmt = stmt.where(User.role == query.role)
    if query.q:
        stmt = stmt.where(sa.or_(_contains(User.username, query.q), _contains(User.full_name, query.q)))
    return await paginate(session, stmt, User.id, cursor=query.cursor, limit=query.limit)


async def get_user(*, session: AsyncSession, actor: Actor, user_id: uuid.UUID) -> User:
    """Admins see their institution's logins; anyone sees their own."""
    user = await _visible_user(session, actor, user_id)
    if user.id != actor.user_id:
        actor.require_admin()
    return user


async def create_user(*, session: AsyncSession, actor: Actor, data: UserCreate, hasher: Hasher) -> User:
    actor.require_admin()
    if actor.is_platform_admin:
        institution_id = data.institution_id
        if institution_id is not None:
            await _institution(session, institution_id)
    else:
        if data.role not in INSTITUTION_GRANTABLE_ROLES:
            raise PermissionDenied("only platform admins create platform admins")
        institution_id = owning_institution(actor, data.institution_id)
    return await service.create_user(
        session=session,
        username=data.username,
        password=data.password,
        role=data.role,
        institution_id=institution_id,
        full_name=" ".join(data.full_name.split()),
        email=data.email,
        hasher=hasher,
    )


async def update_user(*, session: AsyncSession, actor: Actor, user_id: uuid.UUID, data: UserUpdate) -> User:
    user = await _visible_user(session, actor, user_id)
    actor.require_admin()
    changes = data.model_dump(exclude_unset=True)
    # An admin who locks themselves out may leave the school with no admin at all.
    if changes.get("is_active") is False and user.id == actor.user_id:
        raise Conflict("you cannot deactivate your own login", code="cannot_deactivate_self")
    if changes.get("full_name") is not None:
        user.full_name = " ".join(changes["full_name"].split())
    if "email" in changes:
        user.email = changes["email"]
    if changes.get("is_active") is not None:
        user.is_active = changes["is_active"]
    await session.flush()
    return user


async def me(*, session: AsyncSession, actor: Actor) -> tuple[User, uuid.UUID | None]:
    """The caller's login and, for learners, their profile id (read fresh, not from the
    token, so a profile linked since sign-in shows up)."""
    if actor.user_id is None:
        raise NotFound("this caller has no login")
    user = await session.get(User, actor.user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound("this login no longer exists")
    learner_id = await session.scalar(
        sa.select(Learner.id).where(Learner.user_id == user.id, Learner.deleted_at.is_(None))
    )
    return user, learner_id


# Learner profiles -----------------------------------------------------------------------


async def _phones_by_id(session: AsyncSession, learners: Iterable[Learner]) -> dict[uuid.UUID, str]:
    phone_ids = {learner.phone_id for learner in learners if learner.phone_id is not None}
    if not phone_ids:
        return {}
    rows = await session.execute(sa.select(Phone.id, Phone.e164).where(Phone.id.in_(phone_ids)))
    return dict(rows.all())


def _learner_out(learner: Learner, phones: dict[uuid.UUID, str]) -> LearnerOut:
    return LearnerOut(
        id=learner.id,
        institution_id=learner.institution_id,
        display_name=learner.display_name,
        language=learner.language,
        account_no=learner.account_no,
        phone=phones.get(learner.phone_id) if learner.phone_id is not None else None,
        grade=learner.grade,
        has_pin=learner.pin_hash is not None,
        pin_locked_until=learner.pin_locked_until,
        created_at=learner.created_at,
    )


async def learner_views(*, session: AsyncSession, learners: Sequence[Learner]) -> list[LearnerOut]:
    """Profiles as the API shows them: the phone in E.164 and never the PIN hash."""
    phones = await _phones_by_id(session, learners)
    return [_learner_out(learner, phones) for learner in learners]


async def _visible_learner(session: AsyncSession, actor: Actor, learner_id: uuid.UUID) -> Learner:
    learner = await session.get(Learner, learner_id)
    ensure_visible(learner, actor, what="learner")
    assert learner is not None
    return learner


def _phone_condition(text: str) -> sa.ColumnElement[bool] | None:
    """Learners whose phone matches ``text``: a whole number in any local format, or a
    run of its digits."""
    try:
        e164: str | None = normalize_msisdn(text)
    except InvalidInput:
        e164 = None
    if e164 is not None:
        return Learner.phone_id.in_(sa.select(Phone.id).where(Phone.e164 == e164))
    digits = "".join(ch for ch in text if ch not in " +-()")
    if not digits.isascii() or not digits.isdigit() or len(digits) < MIN_PHONE_FRAGMENT_DIGITS:
        return None
    if digits.startswith("254"):
        pattern = f"+{digits}%"
    elif digits.startswith("0"):
        pattern = f"+254{digits[1:]}%"
    else:
        pattern = f"%{digits}%"
    return Learner.phone_id.in_(sa.select(Phone.id).where(Phone.e164.like(pattern)))


async def list_learners(
    *, session: AsyncSession, actor: Actor, query: LearnerListQuery
) -> tuple[list[LearnerOut], str | None]:
    actor.require_staff()
    stmt = tenant_filter(sa.select(Learner).where(Learner.deleted_at.is_(None)), Learner.institution_id, actor)
    if query.q and query.q.strip():
        text = query.q.strip()
        by_phone = _phone_condition(text)
        by_name = _contains(Learner.display_name, text)
        stmt = stmt.where(by_name if by_phone is None else sa.or_(by_name, by_phone))
    rows, cursor = await paginate(session, stmt, Learner.id, cursor=query.cursor, limit=query.limit)
    return await learner_views(session=session, learners=rows), cursor


async def get_learner(*, session: AsyncSession, actor: Actor, learner_id: uuid.UUID) -> LearnerOut:
    """Staff of the learner's institution, or the learner through their own login."""
    learner = await _visible_learner(session, actor, learner_id)
    if not actor.is_staff and actor.learner_id != learner.id:
        raise PermissionDenied("learners see only their own profile")
    return (await learner_views(session=session, learners=[learner]))[0]


async def own_learner(*, session: AsyncSession, actor: Actor) -> LearnerOut:
    return await get_learner(session=session, actor=actor, learner_id=actor.own_learner_id())


async def _linkable_user(session: AsyncSession, institution_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    user = await session.get(User, user_id)
    if user is None or user.deleted_at is not None or user.institution_id != institution_id:
        raise NotFound("user not found")
    if user.role is not Role.LEARNER:
        raise InvalidInput("only a learner login can be linked to a learner profile", code="user_not_learner")
    # Soft-deleted profiles still hold the link (the column is unique), so count them too.
    if await session.scalar(sa.select(Learner.id).where(Learner.user_id == user.id).limit(1)):
        raise Conflict("that login already has a learner profile", code="user_already_linked")
    return user.id


async def create_learner(*, session: AsyncSession, actor: Actor, data: LearnerCreate, hasher: Hasher) -> LearnerOut:
    actor.require_staff()
    institution_id = owning_institution(actor, data.institution_id)
    if institution_id is None:
        raise InvalidInput("say which institution the learner belongs to", code="institution_required")
    await _institution(session, institution_id)
    user_id = await _linkable_user(session, institution_id, data.user_id) if data.user_id is not None else None
    learner = await service.create_learner(
        session=session,
        institution_id=institution_id,
        display_name=data.display_name,
        phone=data.phone,
        language=data.language,
        pin=data.pin,
        user_id=user_id,
        grade=_clean_name(data.grade, code="invalid_grade") if data.grade is not None else None,
        hasher=hasher,
    )
    return (await learner_views(session=session, learners=[learner]))[0]


async def update_learner(
    *, session: AsyncSession, actor: Actor, learner_id: uuid.UUID, data: LearnerUpdate
) -> LearnerOut:
    """Staff change any field; a learner may rename themself and switch language."""
    learner = await _visible_learner(session, actor, learner_id)
    changes = data.model_dump(exclude_unset=True)
    if not actor.is_staff:
        if actor.learner_id != learner.id:
            raise PermissionDenied("learners change only their own profile")
        if "grade" in changes:
            raise PermissionDenied("the school sets a learner's grade")
    if changes.get("display_name") is not None:
        learner.display_name = _clean_name(changes["display_name"], code="invalid_name")
    if changes.get("language") is not None:
        learner.language = changes["language"]
    if "grade" in changes:
        grade = changes["grade"]
        learner.grade = _clean_name(grade, code="invalid_grade") if grade is not None else None
    await session.flush()
    return (await learner_views(session=session, learners=[learner]))[0]


async def reset_pin(*, session: AsyncSession, actor: Actor, learner_id: uuid.UUID, pin: str, hasher: Hasher) -> None:
    """A forgotten PIN is replaced, not recovered; the lockout goes with the old PIN."""
    learner = await _visible_learner(session, actor, learner_id)
    actor.require_admin()
    check_pin_format(pin)
    learner.pin_hash = await asyncio.to_thread(hasher.hash, pin)  # argon2: off the event loop
    learner.pin_failed_count = 0
    learner.pin_locked_until = None
    await session.flush()


async def unlock_learner(*, session: AsyncSession, actor: Actor, learner_id: uuid.UUID) -> None:
    learner = await _visible_learner(session, actor, learner_id)
    actor.require_admin()
    learner.pin_failed_count = 0
    learner.pin_locked_until = None
    await session.flush()


async def learners_on_phone(*, session: AsyncSession, actor: Actor, raw_msisdn: str) -> PhoneLearners:
    """The profiles sharing one phone, limited to the actor's institution."""
    actor.require_staff()
    try:
        e164 = normalize_msisdn(raw_msisdn)
    except InvalidInput as exc:
        # The number names the resource, so one that cannot exist is simply not found.
        raise NotFound(exc.detail, code="invalid_phone") from None
    stmt = tenant_filter(service.phone_learners_query(e164), Learner.institution_id, actor)
    rows = list((await session.scalars(stmt)).all())
    return PhoneLearners(phone=e164, items=await learner_views(session=session, learners=rows))
