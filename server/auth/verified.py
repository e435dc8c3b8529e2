"""A per-process cache of access tokens whose signature was already verified."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from lms_domain.access import Actor
from lms_domain.errors import Unauthenticated

LEEWAY_S = 30  # school servers' clocks drift; a little leeway avoids spurious 401s


class VerifiedTokens:
    """Tokens whose signature was already checked, so a busy client costs one HMAC check
    per token rather than per request. Expiry is still checked on every use. Bounded: the
    oldest entries go first."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._actors: OrderedDict[str, tuple[Actor, int]] = OrderedDict()

    def get(self, token: str, now: datetime) -> Actor | None:
        hit = self._actors.get(token)
        if hit is None:
            return None
        actor, expires = hit
        if expires + LEEWAY_S < now.timestamp():
            del self._actors[token]
            raise Unauthenticated("the access token has expired; refresh it", code="token_expired")
        return actor

    def put(self, token: str, actor: Actor, expires: int) -> None:
        self._actors[token] = (actor, expires)
        if len(self._actors) > self._capacity:
            self._actors.popitem(last=False)
