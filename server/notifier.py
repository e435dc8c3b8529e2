"""Send the SMS notifications queued in the send log.

Notifications are queued inside the transaction that caused them (a payment settled, say);
every ``send_interval_s`` this loop sends those that are due. One pass at a time per process;
with several processes, each message is claimed under a row lock before it is sent, so none
goes twice. The scheduler issue moves this into its job runner (with quiet hours).
"""

from __future__ import annotations

import logging
from collections import Counter

from aiohttp import web

from lms_domain.notifications.service import deliver_sms, due_sms
from server.keys import clock_key, notifier_task_key, phone_channels_key, sessionmaker_key, settings_key
from server.periodic import periodic_ctx

log = logging.getLogger("somo.notifications")
BATCH = 100


async def send_due(app: web.Application) -> dict[str, int]:
    """One pass: send every queued SMS that is due; counts by resulting status."""
    sessions, clock = app[sessionmaker_key], app[clock_key]
    sender = app[phone_channels_key].sender
    async with sessions() as session:
        due = await due_sms(session=session, now=clock.now(), limit=BATCH)
    outcomes: Counter[str] = Counter()
    for log_id in due:
        status = await deliver_sms(sessions=sessions, sender=sender, log_id=log_id, clock=clock)
        outcomes[status.value if status else "skipped"] += 1
    if due:
        log.info("notifications sent", extra=dict(outcomes))
    return dict(outcomes)


notifier_ctx = periodic_ctx(
    name="notifier",
    key=notifier_task_key,
    interval_s=lambda app: app[settings_key].notifications.send_interval_s,
    work=send_due,
    log=log,
)
