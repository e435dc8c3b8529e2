"""Send queued notifications promptly: a payment's receipt should not wait for the scheduler's
15-minute sweep. Every ``send_interval_s`` this loop sends what is due; each message is claimed
under a row lock before it is sent, so this loop, the sweep and other processes never send one
twice.
"""

from __future__ import annotations

import logging

from aiohttp import web

from server.jobs import send_due as send_due_with
from server.keys import clock_key, notifier_task_key, senders_key, sessionmaker_key, settings_key
from server.periodic import periodic_ctx

log = logging.getLogger("somo.notifications")


async def send_due(app: web.Application) -> dict[str, int]:
    """One pass: send every queued notification that is due; counts by resulting status."""
    outcomes = await send_due_with(app[sessionmaker_key], app[senders_key], app[clock_key])
    if outcomes:
        log.info("notifications sent", extra=outcomes)
    return outcomes


notifier_ctx = periodic_ctx(
    name="notifier",
    key=notifier_task_key,
    interval_s=lambda app: app[settings_key].notifications.send_interval_s,
    work=send_due,
    log=log,
)
