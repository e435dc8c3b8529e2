"""A bounded pool that processes stored callbacks, so acknowledging never waits on settling.

Spawning one task per callback let a burst of callbacks hold every pooled connection in
settlement transactions (each waiting on the school's change-sequence counter), and the next
callback's acknowledgement then waited for a connection: seconds instead of milliseconds. Here
a few workers (``SOMO_PAYMENTS__SETTLE_WORKERS``) own the settling, the acknowledging path keeps
the rest of the pool, and a burst becomes a queue.

Transactional work is batched: a worker takes what is queued (up to ``batch`` events) and
settles it in one transaction, each event in its own savepoint, so the commit, the fsync and
the counter lock are paid once per batch rather than once per payment. Events are taken in id
order within a batch, so two batches lock rows in the same order. If the batch transaction
itself fails (a deadlock, a lost connection), each event is retried alone; an event that
still fails stays ``received`` with its error recorded, for the poller.

A queued event id is queued once: duplicates of a callback arriving while it waits add nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.db import is_transient
from lms_domain.payments.models import WebhookEvent, WebhookStatus

log = logging.getLogger("somo.inbox")

# Deadlocks and serialisation failures are the database asking for a retry; a lone event gets
# this many tries before it is left "received" (with the error) for the poller.
TRANSIENT_ATTEMPTS = 3


TxWork = Callable[[AsyncSession, uuid.UUID, Clock], Awaitable[object]]
StandaloneWork = Callable[[uuid.UUID], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class _Job:
    event_id: uuid.UUID
    tx: TxWork | None = None
    standalone: StandaloneWork | None = None


class InboxWorkers:
    """Queue stored callbacks and process them with ``workers`` tasks, ``batch`` per transaction."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], clock: Clock, *, workers: int = 2, batch: int = 32
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._workers = max(1, workers)
        self._batch = max(1, batch)
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._queued: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def submit_tx(self, work: TxWork, event_id: uuid.UUID) -> None:
        """Process ``event_id`` with ``work`` inside a (batched) transaction."""
        self._put(_Job(event_id, tx=work))

    def submit(self, work: StandaloneWork, event_id: uuid.UUID) -> None:
        """Process ``event_id`` with ``work``, which opens its own units of work (provider I/O)."""
        self._put(_Job(event_id, standalone=work))

    def _put(self, job: _Job) -> None:
        if job.event_id in self._queued:
            return
        self._queued.add(job.event_id)
        self._idle.clear()
        self._queue.put_nowait(job)
        if not self._tasks:
            self.start()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(), name=f"inbox-worker-{n}") for n in range(self._workers)]

    def __len__(self) -> int:
        return self._queue.qsize() + self._busy

    async def drain(self) -> None:
        """Wait until every queued event (and any queued meanwhile) is processed."""
        while len(self):
            await self._idle.wait()

    async def stop(self) -> None:
        """Finish what is queued, then stop the workers."""
        await self.drain()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _take(self, first: _Job) -> list[_Job]:
        jobs = [first]
        if first.tx is None:
            return jobs
        held: list[_Job] = []
        while len(jobs) < self._batch and not self._queue.empty():
            job = self._queue.get_nowait()
            (jobs if job.tx is not None else held).append(job)
        for job in held:  # standalone work goes back for the next free worker
            self._queue.put_nowait(job)
        return jobs

    async def _work(self) -> None:
        while True:
            first = await self._queue.get()
            jobs = self._take(first)
            self._busy += len(jobs)
            for job in jobs:
                self._queued.discard(job.event_id)
            try:
                if first.standalone is not None:
                    await self._alone(first)
                else:
                    await self._batched(jobs)
            except Exception:  # the worker must survive anything one batch does
                log.exception("inbox batch failed")
            finally:
                self._busy -= len(jobs)
                if not len(self):
                    self._idle.set()

    async def _batched(self, jobs: list[_Job], attempt: int = 1) -> None:
        jobs.sort(key=lambda job: job.event_id)
        failed: list[tuple[_Job, BaseException]] = []
        try:
            async with self._sessions() as session, session.begin():
                for job in jobs:
                    assert job.tx is not None
                    try:
                        async with session.begin_nested():
                            await job.tx(session, job.event_id, self._clock)
                    except sa.exc.DBAPIError as exc:
                        if exc.connection_invalidated or is_transient(exc):
                            raise  # a deadlock or a lost connection: the batch is retried alone
                        failed.append((job, exc))
                    except Exception as exc:
                        failed.append((job, exc))
        except Exception as exc:
            if len(jobs) == 1:
                transient = isinstance(exc, sa.exc.DBAPIError) and is_transient(exc)
                if transient and attempt < TRANSIENT_ATTEMPTS:
                    await asyncio.sleep(0.05 * attempt)
                    await self._batched(jobs, attempt + 1)
                    return
                await self._record_failure(jobs[0], exc)
                return
            log.warning("inbox batch of %d failed (%s); retrying each alone", len(jobs), type(exc).__name__)
            for job in jobs:
                await self._batched([job])
            return
        for job, error in failed:
            await self._record_failure(job, error)

    async def _alone(self, job: _Job) -> None:
        assert job.standalone is not None
        try:
            await job.standalone(job.event_id)
        except Exception as exc:
            await self._record_failure(job, exc)

    async def _record_failure(self, job: _Job, exc: BaseException) -> None:
        # The row stays "received" for the poller; record why, in a unit of work of its own.
        log.error("processing callback %s failed", job.event_id, exc_info=exc)
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    sa.update(WebhookEvent)
                    .where(WebhookEvent.id == job.event_id, WebhookEvent.status == WebhookStatus.RECEIVED)
                    .values(error=f"{type(exc).__name__}: {exc}"[:2000], attempts=WebhookEvent.attempts + 1)
                )
        except Exception:
            log.exception("could not record the failure of callback %s", job.event_id)
