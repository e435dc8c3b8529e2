"""A small key-value port: Redis when configured, an in-process store otherwise.

Used for short-lived shared state (USSD sessions, login throttling, locks). The
in-process store keeps the embedded default a single process with no Redis to run;
deployments with several replicas must set ``SOMO_REDIS__URL``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis


class KeyValueStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl_s: float) -> None: ...

    async def set_if_absent(self, key: str, value: str, *, ttl_s: float) -> bool:
        """Set only if absent; True if this call set it (a lock or first-writer-wins)."""
        ...

    async def delete(self, key: str) -> None: ...

    async def claim_and_get(self, claim: str, *, ttl_s: float, key: str) -> tuple[bool, str | None]:
        """``set_if_absent(claim, "1")`` and ``get(key)`` in one round trip: whether the claim was
        had, and the value (read either way)."""
        ...

    async def write(self, sets: Mapping[str, tuple[str, float]], deletes: Collection[str] = ()) -> None:
        """Sets (key -> value and TTL in seconds), then deletes, applied together in one round trip."""
        ...

    async def incr(self, key: str, *, ttl_s: float) -> int:
        """Increment a counter; the TTL starts with the first increment."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._data: dict[str, tuple[str, float]] = {}

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires <= self._now():
            del self._data[key]
            return None
        return value

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, *, ttl_s: float) -> None:
        self._data[key] = (value, self._now() + ttl_s)

    async def set_if_absent(self, key: str, value: str, *, ttl_s: float) -> bool:
        if self._live(key) is not None:
            return False
        self._data[key] = (value, self._now() + ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def claim_and_get(self, claim: str, *, ttl_s: float, key: str) -> tuple[bool, str | None]:
        return await self.set_if_absent(claim, "1", ttl_s=ttl_s), self._live(key)

    async def write(self, sets: Mapping[str, tuple[str, float]], deletes: Collection[str] = ()) -> None:
        for key, (value, ttl_s) in sets.items():
            self._data[key] = (value, self._now() + ttl_s)
        for key in deletes:
            self._data.pop(key, None)

    async def incr(self, key: str, *, ttl_s: float) -> int:
        current = self._live(key)
        if current is None:
            self._data[key] = ("1", self._now() + ttl_s)
            return 1
        value = int(current) + 1
        self._data[key] = (str(value), self._data[key][1])
        return value

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


class RedisStore:
    def __init__(self, client: Redis, *, prefix: str = "somo:") -> None:
        self._redis = client
        self._prefix = prefix

    @property
    def client(self) -> Redis:
        return self._redis

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "somo:", max_connections: int = 100) -> RedisStore:
        """A client whose pool makes callers wait for a free connection (up to 5 s) instead of
        failing at once when every connection is busy, as redis-py's default pool does."""
        pool = BlockingConnectionPool.from_url(
            url, decode_responses=True, socket_timeout=5, max_connections=max_connections, timeout=5
        )
        return cls(Redis(connection_pool=pool), prefix=prefix)

    async def get(self, key: str) -> str | None:
        value = await self._redis.get(self._prefix + key)
        return None if value is None else str(value)

    async def set(self, key: str, value: str, *, ttl_s: float) -> None:
        await self._redis.set(self._prefix + key, value, px=int(ttl_s * 1000))

    async def set_if_absent(self, key: str, value: str, *, ttl_s: float) -> bool:
        return bool(await self._redis.set(self._prefix + key, value, px=int(ttl_s * 1000), nx=True))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._prefix + key)

    async def claim_and_get(self, claim: str, *, ttl_s: float, key: str) -> tuple[bool, str | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._prefix + claim, "1", px=int(ttl_s * 1000), nx=True)
            pipe.get(self._prefix + key)
            claimed, value = await pipe.execute()
        return bool(claimed), None if value is None else str(value)

    async def write(self, sets: Mapping[str, tuple[str, float]], deletes: Collection[str] = ()) -> None:
        if not sets and not deletes:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            for key, (value, ttl_s) in sets.items():
                pipe.set(self._prefix + key, value, px=int(ttl_s * 1000))
            if deletes:
                pipe.delete(*(self._prefix + key for key in deletes))
            await pipe.execute()

    async def incr(self, key: str, *, ttl_s: float) -> int:
        full = self._prefix + key
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(full)
            pipe.pexpire(full, int(ttl_s * 1000), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)  # a pool passed in is not closed otherwise
