"""Ask the providers about payments that never got an answer.

Callbacks get lost (Daraja's sandbox loses many; Airtel's retries are undocumented), so every
``poll_interval_s`` the server asks about intents pending longer than ``poll_after_s``: STK
Query for M-Pesa (which also retries inbox rows still waiting for their intent), an enquiry for
Airtel. One pass at a time per process; with several processes the row locks and one-way
states keep a double answer harmless. The scheduler issue moves this into its job runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from lms_domain.payments import flows
from lms_domain.payments.models import IntentStatus
from server.keys import clock_key, gateways_key, poller_task_key, sessionmaker_key, settings_key

log = logging.getLogger("somo.payments.poller")


async def poll_once(app: web.Application) -> dict[str, int]:
    """One pass over silent intents: how many were asked about, and how many that settled."""
    results = await flows.poll_silent_intents(
        sessions=app[sessionmaker_key],
        gateways=app[gateways_key],
        clock=app[clock_key],
        older_than=timedelta(seconds=app[settings_key].payments.poll_after_s),
    )
    summary = {
        "asked": len(results),
        "settled": sum(status is IntentStatus.SUCCEEDED for status in results.values()),
        "failed": sum(status is IntentStatus.FAILED for status in results.values()),
    }
    if results:
        log.info("payment poll", extra=summary)
    return summary


async def _loop(app: web.Application, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await poll_once(app)
        except Exception:
            log.exception("payment poll failed; trying again next interval")


async def poller_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the poller for the app's lifetime, unless ``poll_interval_s`` is 0."""
    interval = app[settings_key].payments.poll_interval_s
    if interval > 0:
        app[poller_task_key] = asyncio.create_task(_loop(app, interval), name="payments-poller")
    yield
    if interval > 0:
        task = app[poller_task_key]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
