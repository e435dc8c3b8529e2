"""Work the server process repeats on an interval (the payment poller, the SMS notifier) until
the scheduler issue moves it into a job runner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

CleanupCtx = Callable[[web.Application], AsyncIterator[None]]


def periodic_ctx(
    *,
    name: str,
    key: web.AppKey[asyncio.Task[None]],
    interval_s: Callable[[web.Application], float],
    work: Callable[[web.Application], Awaitable[Any]],
    log: logging.Logger,
) -> CleanupCtx:
    """A cleanup context that runs ``work`` every ``interval_s`` seconds for the app's lifetime
    (never, for 0). A failed pass is logged and the next one runs as planned."""

    async def loop(app: web.Application, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await work(app)
            except Exception:
                log.exception(f"{name} failed; trying again next interval")

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        every = interval_s(app)
        if every > 0:
            app[key] = asyncio.create_task(loop(app, every), name=name)
        yield
        if every > 0:
            task = app[key]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return ctx
