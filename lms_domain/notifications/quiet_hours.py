"""No notification between 22:00 and 07:00 Nairobi time: such messages wait in the queue.

Kept as one small value type because it is checked twice: when a message is queued (its
``scheduled_for`` set to the end of the quiet hours) and again just before it is sent (a
retried message, or one queued at 21:59 and picked up at 22:01, must wait too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from lms_domain.clock import NAIROBI


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Hours of the Nairobi day when nothing is sent; ``start == end`` means never quiet."""

    start_hour: int = 22
    end_hour: int = 7

    def __post_init__(self) -> None:
        if not (0 <= self.start_hour <= 23 and 0 <= self.end_hour <= 23):
            raise ValueError("quiet hours are whole hours from 0 to 23")

    def is_quiet(self, at: datetime) -> bool:
        hour = at.astimezone(NAIROBI).hour
        if self.start_hour == self.end_hour:
            return False
        if self.start_hour < self.end_hour:
            return self.start_hour <= hour < self.end_hour
        return hour >= self.start_hour or hour < self.end_hour

    def next_allowed(self, at: datetime) -> datetime:
        """``at`` itself when it is not quiet, else the end of these quiet hours (in UTC)."""
        if not self.is_quiet(at):
            return at
        local = at.astimezone(NAIROBI)
        end = datetime.combine(local.date(), time(self.end_hour), tzinfo=NAIROBI)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(UTC)


DEFAULT_QUIET_HOURS = QuietHours()
