"""Token buckets: Redis when configured (shared by every replica), in process otherwise.

A bucket holds up to ``burst`` tokens and refills at ``rate`` per second; a request takes
one. The Redis variant runs as one Lua script with the server's own clock (``TIME``), so
replicas with skewed clocks still agree.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from redis.asyncio import Redis

from lms_domain.errors import RateLimited


class Buckets(Protocol):
    async def take(self, key: str, *, rate: float, burst: int) -> float:
        """Take a token; 0.0 if allowed, otherwise the seconds until one is available."""
        ...


class MemoryBuckets:
    MAX_KEYS = 100_000  # bounded memory: idle buckets are full anyway, so dropping them is exact

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        now = self._now()
        tokens, updated = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - updated) * rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < 1.0}
        self._buckets[key] = (tokens, now)


_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', key, 'tokens', 'updated')
local tokens = tonumber(state[1]) or burst
local updated = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', key, 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    def __init__(self, client: Redis, *, prefix: str = "somo:rl:") -> None:
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(_TAKE)

    async def take(self, key: str, *, rate: float, burst: int) -> float:
        return float(await self._script(keys=[self._prefix + key], args=[rate, burst]))


def client_key(request: web.Request) -> str:
    return f"ip:{request.remote or 'unknown'}"


def token_key(request: web.Request) -> str | None:
    """The bucket of the bearer token itself, however the header is spelled (the parser
    accepts any case of "Bearer" and extra spaces, so the raw header would not do)."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    credential = token.strip() if scheme.lower() == "bearer" else header
    return "tok:" + hashlib.sha256(credential.encode()).hexdigest()[:24]


def rate_limit_middleware(
    buckets_of: Callable[[web.Application], Buckets],
    *,
    prefixes: tuple[str, ...],
    per_client: tuple[float, int],
    per_token: tuple[float, int],
) -> Middleware:
    """Limit requests under ``prefixes`` per client address and per bearer token.

    The per-client limit is generous on purpose: a whole school, or a mobile operator's
    carrier-grade NAT, can sit behind one address; the per-token limit is the tight one.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(prefixes):
            buckets = buckets_of(request.app)
            checks = [(client_key(request), per_client)]
            token = token_key(request)
            if token:
                checks.append((token, per_token))
            for key, (rate, burst) in checks:
                wait = await buckets.take(key, rate=rate, burst=burst)
                if wait > 0:
                    raise RateLimited("too many requests; slow down", retry_after_s=max(1, math.ceil(wait)))
        return await handler(request)

    return middleware
