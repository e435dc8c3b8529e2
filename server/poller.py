"""Ask the providers about payments that never got an answer.

Callbacks get lost (Daraja's sandbox loses many; Airtel's retries are undocumented), so every
``poll_interval_s`` the server asks about intents pending longer than ``poll_after_s``: STK
Query for M-Pesa (which also retries inbox rows still waiting for their intent), an enquiry for
Airtel. One pass at a time per process; with several processes the row locks and one-way
states keep a double answer harmless. The scheduler issue moves this into its job runner.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from lms_domain.payments import flows
from lms_domain.payments.models import IntentStatus
from server.keys import clock_key, gateways_key, poller_task_key, sessionmaker_key, settings_key
from server.periodic import periodic_ctx

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


poller_ctx = periodic_ctx(
    name="payments-poller",
    key=poller_task_key,
    interval_s=lambda app: app[settings_key].payments.poll_interval_s,
    work=poll_once,
    log=log,
)
