"""Logging in, and refresh tokens that can be revoked.

Failed logins first slow down (each try after the third must wait 2^n seconds), then lock
the account for a while. The state lives on the user row, so it holds across server
processes and restarts. Unknown usernames cost one hash too, so timing reveals nothing.
"""

from __future__ import annotations

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
    by_name = await session.scalar(sa.select(User).where(User.username == login.lower()))
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
    )
    return list(rows)


def _retry_after(user: User, now: datetime) -> float:
    if user.locked_until is not None and user.locked_until > now:
        return (user.locked_until - now).total_seconds()
    return 0.0


async def authenticate(*, session: AsyncSession, login: str, password: str, clock: Clock, hasher: Hasher) -> User:
    """The user with this username (or phone) and password, or an error. Commits nothing:
    the caller commits so that failure counters persist even though it answers 401."""
    now = clock.now()
    users = [u for u in await _candidates(session, login) if u.is_active and u.deleted_at is None]
    if users:
        # A suspended institution's people cannot sign in (platform admins have none).
        inactive = set(
            await session.scalars(
                sa.select(Institution.id).where(
                    Institution.id.in_([u.institution_id for u in users if u.institution_id]),
                    Institution.is_active.is_(False),
                )
            )
        )
        users = [u for u in users if u.institution_id not in inactive]
    if not users:
        hasher.verify(hasher.hash(_DUMMY_HASH_INPUT), password)
        raise Unauthenticated("wrong username or password", code="invalid_credentials")
    for user in users:
        wait = _retry_after(user, now)
        if wait > 0:
            raise TooManyAttempts("too many failed logins; try again later", retry_after_s=int(wait) + 1)
    for user in users:
        if hasher.verify(user.password_hash, password):
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
    if row.revoked_at is not None:
        await session.execute(
            sa.update(RefreshToken)
            .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        raise Unauthenticated("refresh token was already used", code="refresh_token_reused")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active or user.deleted_at is not None:
        raise Unauthenticated("refresh token is invalid or expired", code="invalid_refresh_token")
    row.revoked_at = now
    issued = await issue_refresh_token(
        session=session, user=user, clock=clock, ttl=ttl, family_id=row.family_id, user_agent=user_agent
    )
    return user, issued


async def revoke_refresh_token(*, session: AsyncSession, raw: str, clock: Clock) -> None:
    """Log out: revoke the token's whole family (every token rotated from this login)."""
    row = await session.scalar(sa.select(RefreshToken).where(RefreshToken.token_sha256 == _hash_token(raw)))
    if row is None:
        return
    await session.execute(
        sa.update(RefreshToken)
        .where(RefreshToken.family_id == row.family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=clock.now())
    )
