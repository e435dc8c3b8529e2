"""USSD analytics from Africa's Talking's end-of-session events: sessions per day, completion,
drop-off by screen, and how long and how many hops a session takes.

Who sees which sessions: an end-of-session event carries a phone number, not a school, so
platform admins see every session, and a school's admin sees the sessions dialled from a phone
that belongs to one of their school's learners (``Learner.phone_id`` -> ``Phone.e164``, soft-
deleted learners included, since their past sessions were made while they were learners). A
phone shared by learners of two schools counts for both; a phone no learner uses yet (someone
dialling to register) counts for the platform only.

Days are Africa/Nairobi days of ``received_at`` (when AT's notice reached us, always set and
indexed; AT sends it seconds after the session ends), never UTC days.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor
from lms_domain.clock import NAIROBI
from lms_domain.errors import InvalidInput
from lms_domain.messaging.models import UssdSessionEvent
from lms_domain.tenancy.models import Learner, Phone

COMPLETED = "Success"
INCOMPLETE = "Incomplete"
FAILED = "Failed"
DEFAULT_DAYS = 30
MAX_DAYS = 366


class UssdFigures(BaseModel):
    """Sessions of one day (or of the whole range) and how they ended."""

    day: date | None = None
    sessions: int = 0
    completed: int = 0
    incomplete: int = 0
    failed: int = 0
    completion_rate: float | None = None  # completed / sessions, 0..1
    avg_duration_s: float | None = None
    avg_hops: float | None = None


class ScreenDropOff(BaseModel):
    """Sessions that ended without success on one screen (None: the screen is not known)."""

    screen: str | None
    sessions: int
    share: float  # of all the range's unsuccessful sessions, 0..1


class UssdAnalytics(BaseModel):
    since: date  # Nairobi days, both inclusive
    until: date
    days: list[UssdFigures]  # every day of the range, quiet ones included
    totals: UssdFigures
    drop_off: list[ScreenDropOff]  # most sessions first


@dataclass
class _Tally:
    sessions: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    duration_ms: int = 0
    timed: int = 0
    hops: int = 0
    hopped: int = 0

    def add(self, status: str, duration_ms: int | None, hops: int | None) -> None:
        self.sessions += 1
        self.statuses[status] += 1
        if duration_ms is not None:
            self.duration_ms += duration_ms
            self.timed += 1
        if hops is not None:
            self.hops += hops
            self.hopped += 1

    def figures(self, day: date | None) -> UssdFigures:
        return UssdFigures(
            day=day,
            sessions=self.sessions,
            completed=self.statuses[COMPLETED],
            incomplete=self.statuses[INCOMPLETE],
            failed=self.statuses[FAILED],
            completion_rate=self.statuses[COMPLETED] / self.sessions if self.sessions else None,
            avg_duration_s=round(self.duration_ms / self.timed / 1000, 1) if self.timed else None,
            avg_hops=round(self.hops / self.hopped, 1) if self.hopped else None,
        )


def _nairobi_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=NAIROBI)


async def ussd_analytics(
    *, session: AsyncSession, actor: Actor, since: date | None, until: date | None, today: date
) -> UssdAnalytics:
    """Figures for the Nairobi days ``since``..``until`` (the last 30 days up to ``today`` by
    default), of the sessions the actor may see (see the module's docstring)."""
    actor.require_admin()
    until = until or today
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise InvalidInput("the range starts after it ends", code="invalid_range")
    if (until - since).days >= MAX_DAYS:
        raise InvalidInput(f"choose at most {MAX_DAYS} days", code="invalid_range")
    event = UssdSessionEvent
    stmt = sa.select(event.status, event.received_at, event.duration_ms, event.hops, event.last_screen).where(
        event.received_at >= _nairobi_midnight(since),
        event.received_at < _nairobi_midnight(until + timedelta(days=1)),
    )
    # Only five narrow columns per session: a year of a busy code is a few hundred thousand
    # small rows, and bucketing into Nairobi days in Python keeps one query for both databases.
    # Not ``session.stream``: the console's read-only sessions run in autocommit, where
    # Postgres has no server-side cursor.
    if not actor.is_platform_admin:
        school_phones = (
            sa.select(Phone.e164)
            .join(Learner, Learner.phone_id == Phone.id)
            .where(Learner.institution_id == actor.institution_id)
        )
        stmt = stmt.where(event.phone.in_(school_phones))
    per_day: dict[date, _Tally] = {}
    total = _Tally()
    screens: Counter[str | None] = Counter()
    for status, received_at, duration_ms, hops, last_screen in await session.execute(stmt):
        day = received_at.astimezone(NAIROBI).date()
        per_day.setdefault(day, _Tally()).add(status, duration_ms, hops)
        total.add(status, duration_ms, hops)
        if status != COMPLETED:
            screens[last_screen] += 1
    unsuccessful = sum(screens.values())
    days = [
        per_day.get(since + timedelta(days=n), _Tally()).figures(since + timedelta(days=n))
        for n in range((until - since).days + 1)
    ]
    drop_off = [
        ScreenDropOff(screen=screen, sessions=count, share=count / unsuccessful)
        for screen, count in sorted(screens.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    ]
    return UssdAnalytics(since=since, until=until, days=days, totals=total.figures(None), drop_off=drop_off)
