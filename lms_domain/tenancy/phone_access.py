"""Who is dialling: the profiles on a phone, their PINs, and registration by phone.

Used by the USSD and SMS channels, where the phone number is the only identity the
gateway gives us. Many learners share a parent's phone, so the number selects a set of
profiles and a 4-digit PIN selects one of them.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lms_domain.i18n import Language
from lms_domain.phones import normalize_msisdn
from lms_domain.security import Hasher, check_pin_format
from lms_domain.tenancy.locks import locked_learner
from lms_domain.tenancy.models import Institution, Learner, UnknownPhonePolicy
from lms_domain.tenancy.service import create_learner, phone_learners_query

PIN_TRIES = 3
PIN_LOCKOUT = timedelta(minutes=15)
NAME_MAX = 60


@dataclass(frozen=True, slots=True)
class Profile:
    """What a phone channel may show before the PIN: a name to choose by, and the language."""

    learner_id: uuid.UUID
    display_name: str
    language: Language
    institution_id: uuid.UUID
    has_pin: bool


@dataclass(frozen=True, slots=True)
class PinCheck:
    ok: bool
    tries_left: int
    locked_until: datetime | None  # set when the profile is (now) locked


async def profiles_on_phone(*, session: AsyncSession, e164: str) -> list[Profile]:
    """Every live profile dialling from ``e164`` whose school is active, numbered as every
    channel numbers them (``phone_learners_query``)."""
    stmt = phone_learners_query(e164).join(Institution, Institution.id == Learner.institution_id)
    rows = await session.scalars(stmt.where(Institution.is_active.is_(True)))
    return [Profile(r.id, r.display_name, r.language, r.institution_id, r.pin_hash is not None) for r in rows]


def _pin_state(learner_id: uuid.UUID) -> sa.Select[int, datetime | None, str | None]:
    """The columns a PIN check reads: a plain row, not a ``Learner`` object with every column."""
    return sa.select(Learner.pin_failed_count, Learner.pin_locked_until, Learner.pin_hash).where(
        Learner.id == learner_id
    )


def _locked(learner: Learner, now: datetime) -> bool:
    return learner.pin_locked_until is not None and learner.pin_locked_until > now


async def check_pin(
    *, sessions: async_sessionmaker[AsyncSession], learner_id: uuid.UUID, pin: str, hasher: Hasher, clock: Clock
) -> PinCheck:
    """Check a PIN typed for ``learner_id``; the third wrong try in a row locks the profile for
    15 minutes (a 4-digit PIN is only as strong as this lockout).

    The argon2 check runs in a thread and outside any transaction: it takes tens of
    milliseconds of CPU, which would stall the event loop and, on SQLite, every writer.
    A right PIN on a profile with no failures (the common case) writes nothing.
    """
    async with sessions() as session:
        first = (await session.execute(_pin_state(learner_id).add_columns(Learner.deleted_at))).first()
    if first is None or first.deleted_at is not None:
        raise NotFound("learner not found")
    if first.pin_locked_until is not None and first.pin_locked_until > clock.now():
        return PinCheck(ok=False, tries_left=0, locked_until=first.pin_locked_until)
    stored = first.pin_hash
    well_formed = len(pin) == 4 and pin.isascii() and pin.isdigit()
    right = stored is not None and well_formed and await asyncio.to_thread(hasher.verify, stored, pin)
    # Decided again after the (slow) check, on a fresh read: a lockout that wrong guesses
    # earned while this one was being verified holds, so a burst of guesses cannot slip a right
    # one past it. Wrong tries, and a right one that must clear failures, are then counted
    # under the learner lock, one after another, exactly as if typed in turn.
    if right:
        async with sessions() as session:
            row = (await session.execute(_pin_state(learner_id))).one()
        if row.pin_hash == stored and row.pin_failed_count == 0 and row.pin_locked_until is None:
            return PinCheck(ok=True, tries_left=PIN_TRIES, locked_until=None)  # nothing to clear: no write
    async with sessions() as session, session.begin():
        learner = await locked_learner(session, learner_id)
        now = clock.now()
        if _locked(learner, now):
            return PinCheck(ok=False, tries_left=0, locked_until=learner.pin_locked_until)
        if right and learner.pin_hash == stored:
            if learner.pin_failed_count or learner.pin_locked_until:
                learner.pin_failed_count, learner.pin_locked_until = 0, None
            return PinCheck(ok=True, tries_left=PIN_TRIES, locked_until=None)
        learner.pin_failed_count += 1
        if learner.pin_failed_count >= PIN_TRIES:
            learner.pin_failed_count, learner.pin_locked_until = 0, now + PIN_LOCKOUT
            return PinCheck(ok=False, tries_left=0, locked_until=learner.pin_locked_until)
        return PinCheck(ok=False, tries_left=PIN_TRIES - learner.pin_failed_count, locked_until=None)


async def school_for_registration(*, session: AsyncSession, code: str) -> Institution:
    """The school whose code an unknown learner typed, if it lets learners register by phone.

    NotFound for an unknown or inactive code; PermissionDenied (``registration_closed``)
    where the school registers its learners itself.
    """
    cleaned = code.strip().upper()
    school = await session.scalar(sa.select(Institution).where(Institution.code == cleaned))
    if school is None or not school.is_active or school.deleted_at is not None:
        raise NotFound("no school has that code", code="unknown_school_code")
    if school.unknown_phone_policy is UnknownPhonePolicy.ASK_SCHOOL:
        raise PermissionDenied(
            "this school registers its learners itself", code="registration_closed", school=school.name
        )
    return school


def clean_display_name(raw: str) -> str:
    name = " ".join(raw.split())
    if len(name) < 2 or len(name) > NAME_MAX or not any(ch.isalpha() for ch in name):
        raise InvalidInput(f"a name is 2-{NAME_MAX} characters with letters", code="invalid_name")
    return name


async def hash_pin(pin: str, hasher: Hasher) -> str:
    """A new PIN's hash, computed in a thread: callers hash before opening the transaction that
    stores it, so no writer waits on argon2."""
    check_pin_format(pin)
    return await asyncio.to_thread(hasher.hash, pin)


async def register_by_phone(
    *,
    session: AsyncSession,
    e164: str,
    school_code: str,
    display_name: str,
    language: Language,
    pin_hash: str,
) -> Learner:
    """A learner registers themselves from their phone: a profile in the school whose code they
    typed, with their own PIN (hashed beforehand by ``hash_pin``)."""
    school = await school_for_registration(session=session, code=school_code)
    name = clean_display_name(display_name)
    # A repeated registration (a gateway retry, a second try after a dropped session) must not
    # make a twin profile; nor may it open the existing one without its PIN.
    same = phone_learners_query(normalize_msisdn(e164)).where(
        Learner.institution_id == school.id, sa.func.lower(Learner.display_name) == name.lower()
    )
    if await session.scalar(same) is not None:
        raise Conflict(f"{name} is already registered on this phone", code="already_registered")
    learner = await create_learner(
        session=session,
        institution_id=school.id,
        display_name=name,
        phone=normalize_msisdn(e164),
        language=language,
    )
    learner.pin_hash = pin_hash
    await session.flush()
    return learner


async def set_language(*, session: AsyncSession, learner_id: uuid.UUID, language: Language) -> None:
    """The learner's own choice of language, kept on the profile (not the phone)."""
    learner = await session.get(Learner, learner_id)
    if learner is None or learner.deleted_at is not None:
        raise NotFound("learner not found")
    if learner.language is not language:
        learner.language = language
        await session.flush()
