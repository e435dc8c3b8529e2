"""Hybrid logical clock (Kulkarni et al.): versions that survive skewed device clocks.

A value packs wall-clock milliseconds in the high bits and a logical counter in the low
16 bits, so it sorts like time when clocks agree and still moves forward when a school
server's clock is hours or years behind: ``observe`` folds in every remote version seen.
"""

from __future__ import annotations

from lms_domain.clock import Clock

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def pack(physical_ms: int, logical: int) -> int:
    return (physical_ms << LOGICAL_BITS) | logical


def unpack(value: int) -> tuple[int, int]:
    return value >> LOGICAL_BITS, value & LOGICAL_MASK


class HybridLogicalClock:
    def __init__(self, clock: Clock, last: int = 0) -> None:
        self._clock = clock
        self._last = last

    @property
    def last(self) -> int:
        return self._last

    def _physical_ms(self) -> int:
        return int(self._clock.now().timestamp() * 1000)

    def tick(self) -> int:
        """A new version for a local change, greater than every version seen so far."""
        wall = self._physical_ms()
        last_phys, last_logical = unpack(self._last)
        if wall > last_phys:
            self._last = pack(wall, 0)
        else:
            self._last = self._bump(last_phys, last_logical)
        return self._last

    def observe(self, remote: int) -> int:
        """Fold in a version received from another node, and return the new local version."""
        wall = self._physical_ms()
        last_phys, last_logical = unpack(self._last)
        remote_phys, remote_logical = unpack(remote)
        top = max(wall, last_phys, remote_phys)
        if top == last_phys == remote_phys:
            self._last = self._bump(top, max(last_logical, remote_logical))
        elif top == last_phys:
            self._last = self._bump(top, last_logical)
        elif top == remote_phys:
            self._last = self._bump(top, remote_logical)
        else:
            self._last = pack(top, 0)
        return self._last

    @staticmethod
    def _bump(physical: int, logical: int) -> int:
        if logical >= LOGICAL_MASK:
            # 65k changes in one millisecond: borrow the next millisecond rather than wrap.
            return pack(physical + 1, 0)
        return pack(physical, logical + 1)
