"""Time: UTC in storage, Africa/Nairobi for people.

Services take a ``Clock`` so tests can pin time without patching the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

NAIROBI = ZoneInfo("Africa/Nairobi")


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that only moves when told to; for tests and deterministic simulations."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


def to_nairobi(at: datetime) -> datetime:
    """Convert a stored UTC time to the time a Kenyan learner reads on a wall clock."""
    if at.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; store UTC with tzinfo")
    return at.astimezone(NAIROBI)


def day_text(at: datetime) -> str:
    """The Nairobi date as people in Kenya write it: 27/11/2026."""
    return to_nairobi(at).strftime("%d/%m/%Y")
