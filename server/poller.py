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
from lms_domain.payments.ports import PaymentGatewayError
from server.keys import clock_key, gateways_key, poller_task_key, sessionmaker_key, settings_key

log = logging.getLogger("somo.payments.poller")


async def poll_once(app: web.Application) -> dict[str, int]:
    """One pass over silent intents; counts of what was asked and what it settled or failed."""
    sessions, clock, gateways = app[sessionmaker_key], app[clock_key], app[gateways_key]
    older_than = timedelta(seconds=app[settings_key].payments.poll_after_s)
    async with sessions() as session, session.begin():
        stk = await flows.reconcile_pending(session, gateways.default_daraja, clock, older_than)
    async with sessions() as session:
        airtel_ids = await flows.pending_airtel_intents(session, clock, older_than)
    airtel: dict[str, str] = {}
    for intent_id in airtel_ids:
        try:
            status = await flows.enquire_airtel(sessions=sessions, intent_id=intent_id, gateways=gateways, clock=clock)
            airtel[str(intent_id)] = status.value
        except PaymentGatewayError as exc:
            log.warning("Airtel enquiry for intent %s failed: %s", intent_id, exc.detail)
    summary = {
        "stk_queried": len(stk),
        "airtel_enquired": len(airtel_ids),
        "settled": sum(1 for s in [*stk.values()] if s.value == "succeeded")
        + sum(1 for s in airtel.values() if s == "succeeded"),
    }
    if stk or airtel_ids:
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
