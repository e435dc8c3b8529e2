"""Institutions, users and learners."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import Conflict, InvalidInput, NotFound
from lms_domain.i18n import Language
from lms_domain.ids import luhn_check_digit, natural_id, new_id
from lms_domain.phones import network_of, normalize_msisdn
from lms_domain.security import DEFAULT_HASHER, Hasher, check_password_strength, check_pin_format
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User


async def create_institution(
    *, session: AsyncSession, name: str, code: str, institution_id: uuid.UUID | None = None
) -> Institution:
    """Register a school; ``code`` is what unknown learners type to join it by USSD."""
    code = code.strip().upper()
    if not code.isalnum() or not 2 <= len(code) <= 16:
        raise InvalidInput("an institution code is 2-16 letters or digits", code="invalid_institution_code")
    if await session.scalar(sa.select(Institution.id).where(Institution.code == code)):
        raise Conflict(f"institution code {code} is taken", code="institution_code_taken")
    institution = Institution(id=institution_id or new_id(), name=name.strip(), code=code)
    session.add(institution)
    await session.flush()
    return institution


async def create_user(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    role: Role,
    institution_id: uuid.UUID | None,
    full_name: str = "",
    email: str | None = None,
    hasher: Hasher = DEFAULT_HASHER,
    user_id: uuid.UUID | None = None,
) -> User:
    username = username.strip().lower()
    if not username:
        raise InvalidInput("a username is required", code="invalid_username")
    check_password_strength(password)
    if (role is Role.PLATFORM_ADMIN) != (institution_id is None):
        raise InvalidInput(
            "platform admins belong to no institution; every other role belongs to one", code="role_tenancy"
        )
    if await session.scalar(sa.select(User.id).where(User.username == username)):
        raise Conflict(f"username {username} is taken", code="username_taken")
    user = User(
        id=user_id or new_id(),
        username=username,
        # argon2 takes tens of milliseconds of CPU: off the event loop.
        password_hash=await asyncio.to_thread(hasher.hash, password),
        role=role,
        institution_id=institution_id,
        full_name=full_name,
        email=email,
    )
    session.add(user)
    await session.flush()
    return user


async def get_or_create_phone(*, session: AsyncSession, raw_msisdn: str) -> Phone:
    """The phone row for a number in any local format; its id is derived from E.164."""
    e164 = normalize_msisdn(raw_msisdn)
    phone_id = natural_id("phone", e164)
    phone = await session.get(Phone, phone_id)
    if phone is None:
        phone = Phone(id=phone_id, e164=e164, network=network_of(e164))
        session.add(phone)
        await session.flush()
    return phone


def account_no_for(learner_id: uuid.UUID) -> str:
    """A 10-digit paybill account number with a Luhn check digit.

    Digits only, because learners type it on a feature-phone keypad in the M-Pesa menu;
    derived from the (offline-minted) learner id so an edge can assign it with no link.
    """
    body = str(learner_id.int % 10**9).zfill(9)
    return body + luhn_check_digit(body)


async def create_learner(
    *,
    session: AsyncSession,
    institution_id: uuid.UUID,
    display_name: str,
    phone: str | None = None,
    language: Language = Language.EN,
    pin: str | None = None,
    user_id: uuid.UUID | None = None,
    grade: str | None = None,
    hasher: Hasher = DEFAULT_HASHER,
    learner_id: uuid.UUID | None = None,
) -> Learner:
    display_name = " ".join(display_name.split())
    if not display_name:
        raise InvalidInput("a learner needs a name", code="invalid_name")
    if await session.get(Institution, institution_id) is None:
        raise NotFound("institution not found")
    phone_row = await get_or_create_phone(session=session, raw_msisdn=phone) if phone else None
    pin_hash = None
    if pin is not None:
        check_pin_format(pin)
        pin_hash = await asyncio.to_thread(hasher.hash, pin)
    learner_id = learner_id or new_id()
    learner = Learner(
        id=learner_id,
        institution_id=institution_id,
        display_name=display_name,
        language=language,
        phone_id=phone_row.id if phone_row else None,
        user_id=user_id,
        account_no=account_no_for(learner_id),
        pin_hash=pin_hash,
        grade=grade,
    )
    session.add(learner)
    await session.flush()
    return learner


def phone_learners_query(e164: str) -> sa.Select[Learner]:
    """The live profiles that dial from ``e164``, in the order every channel numbers them
    (the USSD profile menu, ``RENEW 2`` by SMS, the admin's list of a shared phone)."""
    return (
        sa.select(Learner)
        .join(Phone, Phone.id == Learner.phone_id)
        .where(Phone.e164 == e164, Learner.deleted_at.is_(None))
        .order_by(Learner.display_name, Learner.id)
    )


async def learners_on_phone(*, session: AsyncSession, raw_msisdn: str) -> list[Learner]:
    """Every active profile that dials from this phone (a parent's phone may hold several)."""
    return list(await session.scalars(phone_learners_query(normalize_msisdn(raw_msisdn))))
