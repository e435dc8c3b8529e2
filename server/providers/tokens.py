"""The bearer-token cache both provider adapters share.

Daraja kills the previous token when a new one is minted, and Airtel's live three minutes, so
a gateway keeps exactly one token, refreshes it a margin before it expires, and lets
concurrent callers share a single refresh (single flight) instead of each minting their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from lms_domain.clock import Clock


class TokenCache:
    """One bearer token per credential set; concurrent callers share a single refresh.

    The refresh happens ``margin_s`` before expiry, but never later than at
    ``1 / min_fraction`` of the token's life, so a short-lived token is not refreshed too late.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[tuple[str, int]]],
        clock: Clock,
        *,
        margin_s: int = 60,
        min_fraction: int = 2,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin_s = margin_s
        self._min_fraction = min_fraction
        self._token: str | None = None
        self._refresh_at: datetime | None = None
        self._lock = asyncio.Lock()

    def _current(self, stale: str | None) -> str | None:
        if self._token is None or self._token == stale or self._refresh_at is None:
            return None
        return self._token if self._clock.now() < self._refresh_at else None

    async def get(self, *, stale: str | None = None) -> str:
        """A valid token; ``stale`` names one the provider just refused, forcing a refresh."""
        if token := self._current(stale):
            return token
        async with self._lock:
            # Whoever held the lock before us may already have refreshed it.
            if token := self._current(stale):
                return token
            token, expires_in = await self._fetch()
            margin = min(self._margin_s, expires_in // self._min_fraction)
            self._token = token
            self._refresh_at = self._clock.now() + timedelta(seconds=expires_in - margin)
            return token
