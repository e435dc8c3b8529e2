"""Callback fault scripting and the delivery log, shared by the provider simulators.

Real providers deliver callbacks at least once and possibly never: late, twice, out of order,
or contradicted by a later result. A simulator hands each result to a ``CallbackDispatcher``
with the ``CallbackFaults`` that apply to it; the dispatcher's background worker delivers it
over real HTTP and records every attempt in a ``DeliveryLog`` so tests can assert on exactly
what reached the receiver and in which order.

Faults per callback (``CallbackFaults``), resolved per request, then per MSISDN, then global:

* ``drop``: never deliver the result or its duplicates; logged as dropped when it was due.
* ``delay_ms``: wait this long before the first delivery.
* ``copies``: duplicate x k, k identical bodies.
* ``straggler_ms``: hold the last duplicate back this long, so it lands after later events.
* ``contradict_after_ms``: after this long, deliver a contradicting result for the same key.

Faults across callbacks (``DispatchFaults``):

* ``reorder_window``: hold this many callbacks, then release them in a seeded shuffled order
  (out of order across intents).
* ``burst_size``: hold this many callbacks, then fire them all at once, concurrently.
* ``hold_timeout_ms``: held callbacks are released anyway after this long, so none is stuck.

Ordering is deterministic for a given seed: jobs are ordered by (due time, sequence number)
and, outside bursts, sent one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import aiohttp

DeliveryKind = Literal["result", "duplicate", "contradiction"]
FAULT_HEADER = "X-Sim-Faults"


class FaultSpecError(ValueError):
    """A fault specification (header or config string) that cannot be parsed."""


@dataclass(frozen=True, slots=True)
class CallbackFaults:
    """Faults applied to the callbacks of one intent; the default delivers once, at once."""

    drop: bool = False
    delay_ms: int = 0
    copies: int = 1
    straggler_ms: int | None = None
    contradict_after_ms: int | None = None

    def __post_init__(self) -> None:
        if self.copies < 1 or self.delay_ms < 0:
            raise FaultSpecError("copies must be >= 1 and delay_ms >= 0")
        for value in (self.straggler_ms, self.contradict_after_ms):
            if value is not None and value < 0:
                raise FaultSpecError("fault delays must be >= 0")


@dataclass(frozen=True, slots=True)
class DispatchFaults:
    """Faults that span callbacks of different intents."""

    reorder_window: int = 0
    burst_size: int = 0
    hold_timeout_ms: int = 500

    @property
    def gated(self) -> bool:
        return self.reorder_window > 1 or self.burst_size > 1

    @property
    def gate_size(self) -> int:
        return max(self.reorder_window, self.burst_size)


def parse_faults(spec: str, base: CallbackFaults | None = None) -> CallbackFaults:
    """Parse ``drop;delay=200;dup=3;straggle=300;contradict=100`` on top of ``base``.

    A compact string so a test can script one request through a header without JSON quoting.
    """
    faults = base or CallbackFaults()
    numeric = ("delay", "dup", "straggle", "contradict")
    for raw in spec.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if name == "drop" and not sep:
            faults = replace(faults, drop=True)
        elif name in numeric and sep and value.strip().isdigit():
            number = int(value)
            if name == "delay":
                faults = replace(faults, delay_ms=number)
            elif name == "dup":
                faults = replace(faults, copies=number)
            elif name == "straggle":
                faults = replace(faults, straggler_ms=number)
            else:
                faults = replace(faults, contradict_after_ms=number)
        else:
            raise FaultSpecError(f"unknown fault {part!r}")
    return faults


@dataclass(slots=True)
class DeliveryAttempt:
    """One callback delivery attempt; ``status`` is None until answered (or when dropped/failed)."""

    seq: int
    at: datetime
    url: str
    key: str
    kind: DeliveryKind
    body: Mapping[str, Any]
    status: int | None = None
    error: str | None = None
    dropped: bool = False

    def as_json(self) -> dict[str, Any]:
        """The form served by ``GET /sim/deliveries``."""
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "url": self.url,
            "key": self.key,
            "kind": self.kind,
            "body": self.body,
            "status": self.status,
            "error": self.error,
            "dropped": self.dropped,
        }


@dataclass(slots=True)
class DeliveryLog:
    """Every attempt in the order it was made (recorded before the POST, so order is deterministic)."""

    attempts: list[DeliveryAttempt] = field(default_factory=list)

    def record(self, at: datetime, url: str, key: str, kind: DeliveryKind, body: Mapping[str, Any]) -> DeliveryAttempt:
        attempt = DeliveryAttempt(seq=len(self.attempts), at=at, url=url, key=key, kind=kind, body=body)
        self.attempts.append(attempt)
        return attempt

    def delivered(self) -> list[DeliveryAttempt]:
        """Attempts that were actually sent (not dropped)."""
        return [a for a in self.attempts if not a.dropped]

    def clear(self) -> None:
        self.attempts.clear()


@dataclass(order=True, slots=True)
class _Job:
    due: float
    seq: int
    url: str = field(compare=False)
    key: str = field(compare=False)
    kind: DeliveryKind = field(compare=False)
    body: Mapping[str, Any] = field(compare=False)
    drop: bool = field(compare=False)


@dataclass(slots=True)
class _Group:
    """All deliveries of one intent, as offsets (seconds) from the moment it is released."""

    jobs: list[tuple[float, DeliveryKind, Mapping[str, Any], bool]]
    url: str
    key: str


class CallbackDispatcher:
    """Schedules callbacks with their faults and delivers them from one background worker."""

    def __init__(
        self,
        *,
        rng: random.Random,
        clock: Callable[[], datetime],
        faults: DispatchFaults,
        log: DeliveryLog,
        timeout_s: float = 5.0,
    ) -> None:
        self._rng = rng
        self._clock = clock
        self.faults = faults
        self.log = log
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._heap: list[_Job] = []
        self._gate: list[_Group] = []
        self._gate_since: float | None = None
        self._seq = 0
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def submit(
        self,
        *,
        url: str,
        key: str,
        body: Mapping[str, Any],
        faults: CallbackFaults,
        after_ms: int = 0,
        contradiction: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue the result ``body`` for ``key`` (and, if scripted, its contradiction)."""
        loop = asyncio.get_running_loop()
        base = (after_ms + faults.delay_ms) / 1000
        jobs: list[tuple[float, DeliveryKind, Mapping[str, Any], bool]] = []
        for copy in range(1 if faults.drop else faults.copies):
            offset = base
            if copy == faults.copies - 1 and copy > 0 and faults.straggler_ms is not None:
                offset += faults.straggler_ms / 1000
            # A dropped result still gets its slot, so the log shows where it would have landed.
            jobs.append((offset, "result" if copy == 0 else "duplicate", body, faults.drop))
        if contradiction is not None and faults.contradict_after_ms is not None:
            jobs.append((base + faults.contradict_after_ms / 1000, "contradiction", contradiction, False))
        group = _Group(jobs=jobs, url=url, key=key)
        self._idle.clear()
        if self.faults.gated:
            if not self._gate:
                self._gate_since = loop.time()
            self._gate.append(group)
            if len(self._gate) >= self.faults.gate_size:
                self._release_gate(loop.time())
        else:
            self._schedule(group, loop.time())
        self._wake.set()

    def _schedule(self, group: _Group, now: float) -> None:
        for offset, kind, body, drop in group.jobs:
            heapq.heappush(self._heap, _Job(now + offset, self._seq, group.url, group.key, kind, body, drop))
            self._seq += 1

    def _release_gate(self, now: float) -> None:
        groups, self._gate, self._gate_since = self._gate, [], None
        if self.faults.reorder_window > 1:
            self._rng.shuffle(groups)
        for group in groups:
            self._schedule(group, now)

    def reset(self, seed: str) -> None:
        """Forget everything queued or held and reseed; a send already in flight still completes."""
        self._rng.seed(seed)
        self._heap.clear()
        self._gate.clear()
        self._gate_since = None
        self._update_idle()

    def _update_idle(self) -> None:
        if not self._heap and not self._gate and self._in_flight == 0:
            self._idle.set()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait until nothing is queued, held or in flight (lets a test assert "nothing more")."""
        async with asyncio.timeout(timeout_s):
            await self._idle.wait()

    @contextlib.asynccontextmanager
    async def running(self, session: aiohttp.ClientSession, *, name: str) -> AsyncIterator[None]:
        """The worker, delivering through ``session`` for as long as the block lasts (a simulator
        app's lifetime)."""
        task = asyncio.create_task(self.run(session), name=name)
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, session: aiohttp.ClientSession) -> None:
        """The worker loop; runs until cancelled by the owning app's cleanup context."""
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            hold_s = self.faults.hold_timeout_ms / 1000
            if self._gate_since is not None and now >= self._gate_since + hold_s:
                self._release_gate(now)
            due: list[_Job] = []
            while self._heap and self._heap[0].due <= now:
                due.append(heapq.heappop(self._heap))
            if due:
                self._in_flight += len(due)
                if self.faults.burst_size > 1:
                    await asyncio.gather(*(self._send(session, job) for job in due))
                else:
                    for job in due:
                        await self._send(session, job)
                continue
            self._update_idle()
            wakes = [job.due for job in self._heap[:1]]
            if self._gate_since is not None:
                wakes.append(self._gate_since + hold_s)
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.0, min(wakes) - now) if wakes else None):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _send(self, session: aiohttp.ClientSession, job: _Job) -> None:
        attempt = self.log.record(self._clock(), job.url, job.key, job.kind, job.body)
        if job.drop:
            attempt.dropped = True
            self._in_flight -= 1
            return
        payload = json.dumps(job.body).encode()
        try:
            async with session.post(
                job.url, data=payload, headers={"Content-Type": "application/json"}, timeout=self._timeout
            ) as response:
                await response.read()
                attempt.status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            # A receiver that is down is a normal event for a provider: log it, never retry.
            attempt.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._in_flight -= 1
