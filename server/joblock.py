"""One run of a job at a time, across every process that shares the database.

* On Postgres: a session-level advisory lock, taken with ``pg_try_advisory_lock`` on a
  connection held for the run. The database drops it if the process dies, so a crashed worker
  never leaves a job locked.
* Otherwise, with Redis configured: redis-py's ``Lock`` (a token checked on release), its
  expiry renewed while the run lasts.
* Otherwise (the embedded SQLite default, one server process): an in-process lock.

Skipping is the answer to contention, never waiting: the other process is doing the work.
The locks guard against wasted effort and interleaved batches; the exactly-once guarantees
(one attempt per dunning step, one message per dedupe key) are unique constraints in the
database, which hold even without them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

LOCK_TTL_S = 120.0  # the Redis lock's expiry, renewed every third of it while the job runs


def _key(name: str) -> str:
    return f"somo-job:{name}"


class JobLocks:
    def __init__(self, engine: AsyncEngine, redis: Redis | None = None) -> None:
        self._engine = engine
        self._redis = redis
        self._local: dict[str, asyncio.Lock] = {}

    @property
    def kind(self) -> str:
        if self._engine.dialect.name == "postgresql":
            return "postgres-advisory"
        return "redis" if self._redis is not None else "process"

    @contextlib.asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[bool]:
        """Yields True with the lock held, False when another run holds it."""
        if self._engine.dialect.name == "postgresql":
            async with self._postgres(name) as got:
                yield got
        elif self._redis is not None:
            async with self._redis_lock(name) as got:
                yield got
        else:
            lock = self._local.setdefault(name, asyncio.Lock())
            if lock.locked():
                yield False
                return
            async with lock:
                yield True

    @contextlib.asynccontextmanager
    async def _postgres(self, name: str) -> AsyncIterator[bool]:
        key = sa.func.hashtextextended(_key(name), 0)
        async with self._engine.connect() as conn:
            got = bool(await conn.scalar(sa.select(sa.func.pg_try_advisory_lock(key))))
            await conn.commit()  # the lock is the session's; no transaction stays open for the run
            try:
                yield got
            finally:
                if got:
                    await conn.execute(sa.select(sa.func.pg_advisory_unlock(key)))
                    await conn.commit()

    @contextlib.asynccontextmanager
    async def _redis_lock(self, name: str) -> AsyncIterator[bool]:
        assert self._redis is not None
        lock = self._redis.lock(f"somo:{_key(name)}", timeout=LOCK_TTL_S, blocking=False)
        if not await lock.acquire():
            yield False
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(LOCK_TTL_S / 3)
                await lock.reacquire()

        renewer = asyncio.create_task(renew(), name=f"lock-renewal:{name}")
        try:
            yield True
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            with contextlib.suppress(Exception):  # expired meanwhile: nothing left to release
                await lock.release()
