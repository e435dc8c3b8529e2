"""Logging in, and refresh tokens that can be revoked.

Failed logins first slow down (each try after the third must wait 2^n seconds), then lock
the account for a while. The state lives on the user row, so it holds across server
processes and restarts. Unknown usernames cost one hash too, so timing reveals nothing.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor
from lms_domain.clock import Clock
from lms_domain.errors import InvalidInput, RateLimited, Unauthenticated
from lms_domain.ids import new_id
from lms_domain.phones import normalize_msisdn
from lms_domain.platform.models import RefreshToken
from lms_domain.security import Hasher
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User

FREE_FAILURES = 3  # tries allowed before slowing down
LOCK_AFTER = 10  # failures before the account locks
LOCK_FOR = timedelta(minutes=15)
MAX_BACKOFF = timedelta(minutes=2)
_DUMMY_HASH_INPUT = "somo-timing-equaliser"


class TooManyAttempts(RateLimited):
    """Carries ``retry_after_s`` so HTTP can answer 429 with Retry-After."""

    code = "too_many_login_attempts"
    title = "Too many failed logins"


def _hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


async def _candidates(session: AsyncSession, login: str) -> list[User]:
    login = login.strip()
    # FOR UPDATE: concurrent tries for one account queue, so every failure is counted
    # (a burst of parallel guesses cannot slip past the lockout). SQLite ignores it; its
    # writers are serialised anyway.
    by_name = await session.scalar(sa.select(User).where(User.username == login.lower()).with_for_update())
    if by_name is not None:
        return [by_name]
    try:
        e164 = normalize_msisdn(login)
    except InvalidInput:
        return []
    # A shared phone may hold several learner logins; the password decides which.
    rows = await session.scalars(
        sa.select(User)
        .join(Learner, Learner.user_id == User.id)
        .join(Phone, Phone.id == Learner.phone_id)
        .where(Phone.e164 == e164, Learner.deleted_at.is_(None))
        .order_by(User.id)
        .with_for_update(of=User)
    )
    return list(rows)


async def _may_sign_in(session: AsyncSession, user: User) -> bool:
    """Active, not deleted, and (for staff and learners) of an active institution."""
    if not user.is_active or user.deleted_at is not None:
        return False
    if user.institution_id is None:
        return True
    return bool(await session.scalar(sa.select(Institution.is_active).where(Institution.id == user.institution_id)))


@functools.lru_cache(maxsize=4)
def _dummy_hash(hasher: Hasher) -> str:
    return hasher.hash(_DUMMY_HASH_INPUT)


def _retry_after(user: User, now: datetime) -> float:
    if user.locked_until is not None and user.locked_until > now:
        return (user.locked_until - now).total_seconds()
    return 0.0


async def authenticate(*, session: AsyncSession, login: str, password: str, clock: Clock, hasher: Hasher) -> User:
    """The user with this username (or phone) and password, or an error. Commits nothing:
    the caller commits so that failure counters persist even though it answers 401."""
    now = clock.now()
    users = [u for u in await _candidates(session, login) if await _may_sign_in(session, u)]
    if not users:
        # Cost one verification, like a known user, so timing does not reveal usernames.
        await asyncio.to_thread(hasher.verify, _dummy_hash(hasher), password)
        raise Unauthenticated("wrong username or password", code="invalid_credentials")
    for user in users:
        wait = _retry_after(user, now)
        if wait > 0:
            raise TooManyAttempts("too many failed logins; try again later", retry_after_s=int(wait) + 1)
    for user in users:
        # argon2 takes tens of milliseconds of CPU; off the event loop, other requests go on.
        if await asyncio.to_thread(hasher.verify, user.password_hash, password):
            user.failed_logins = 0
            user.locked_until = None
            user.last_login_at = now
            await session.flush()
            return user
    for user in users:
        user.failed_logins += 1
        if user.failed_logins >= LOCK_AFTER:
            user.locked_until = now + LOCK_FOR
        elif user.failed_logins > FREE_FAILURES:
            user.locked_until = now + min(timedelta(seconds=2 ** (user.failed_logins - FREE_FAILURES)), MAX_BACKOFF)
    await session.flush()
    raise Unauthenticated("wrong username or password", code="invalid_credentials")


async def actor_for(*, session: AsyncSession, user: User) -> Actor:
    learner_id = None
    if user.role is Role.LEARNER:
        learner_id = await session.scalar(
            sa.select(Learner.id).where(Learner.user_id == user.id, Learner.deleted_at.is_(None))
        )
    return Actor(user_id=user.id, role=user.role, institution_id=user.institution_id, learner_id=learner_id)


@dataclass(frozen=True)
class IssuedRefreshToken:
    token: str
    expires_at: datetime
    family_id: uuid.UUID


async def issue_refresh_token(
    *,
    session: AsyncSession,
    user: User,
    clock: Clock,
    ttl: timedelta,
    family_id: uuid.UUID | None = None,
    user_agent: str | None = None,
) -> IssuedRefreshToken:
    raw = secrets.token_urlsafe(32)
    now = clock.now()
    row = RefreshToken(
        id=new_id(),
        user_id=user.id,
        token_sha256=_hash_token(raw),
        family_id=family_id or new_id(),
        issued_at=now,
        expires_at=now + ttl,
        user_agent=(user_agent or "")[:255] or None,
    )
    session.add(row)
    await session.flush()
    return IssuedRefreshToken(token=raw, expires_at=row.expires_at, family_id=row.family_id)


async def rotate_refresh_token(
    *, session: AsyncSession, raw: str, clock: Clock, ttl: timedelta, user_agent: str | None = None
) -> tuple[User, IssuedRefreshToken]:
    """Swap a refresh token for a new one. Presenting an already-rotated token means it
    was stolen or replayed: the whole family is revoked."""
    now = clock.now()
    row = await session.scalar(sa.select(RefreshToken).where(RefreshToken.token_sha256 == _hash_token(raw)))
    if row is None or row.expires_at <= now:
        raise Unauthenticated("refresh token is invalid or expired", code="invalid_refresh_token")
    # Spend the token with a conditional update: of concurrent refreshes with one token,
    # exactly one wins; the others are reuse, and revoke the family.
    spent = await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        await _revoke_family(session, row.family_id, now)
        raise Unauthenticated("refresh token was already used", code="refresh_token_reused")
    user = await session.get(User, row.user_id)
    if user is None or not await _may_sign_in(session, user):
        raise Unauthenticated("refresh token is invalid or expired", code="invalid_refresh_token")
    issued = await issue_refresh_token(
        session=session, user=user, clock=clock, ttl=ttl, family_id=row.family_id, user_agent=user_agent
    )
    return user, issued


async def revoke_refresh_token(*, session: AsyncSession, raw: str, clock: Clock) -> None:
    """Log out: revoke the token's whole family (every token rotated from this login)."""
    row = await session.scalar(sa.select(RefreshToken).where(RefreshToken.token_sha256 == _hash_token(raw)))
    if row is not None:
        await _revoke_family(session, row.family_id, clock.now())


async def _revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def current_actor(*, session: AsyncSession, user_id: uuid.UUID) -> Actor | None:
    """The actor behind a signed-in browser session, read again on every page so that a
    deactivated login, a closed school or a changed role takes effect at once (a bearer
    token lives minutes; a console session lives hours)."""
    user = await session.get(User, user_id)
    if user is None or not await _may_sign_in(session, user):
        return None
    return await actor_for(session=session, user=user)
