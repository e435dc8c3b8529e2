"""Taking a stored callback (a ``WebhookEvent``) for processing, and filing the outcome.

Every processor (STK, paybill, Transaction Status and Reversal results) starts the same way:
lock the row, skip it when an earlier run already decided it, count the attempt. Doing that in
one place keeps "processing a row twice changes nothing" true for every provider.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.db import lock
from lms_domain.errors import NotFound
from lms_domain.payments.models import WebhookEvent, WebhookStatus


async def claim(session: AsyncSession, event_id: uuid.UUID) -> WebhookEvent | None:
    """The inbox row, locked, with this attempt counted; ``None`` when it is already decided."""
    event = await lock(session, WebhookEvent, event_id)
    if event is None:
        raise NotFound("webhook event not found")
    if event.status is not WebhookStatus.RECEIVED:
        return None
    event.attempts += 1
    return event


def finish(event: WebhookEvent, status: WebhookStatus, clock: Clock, error: str | None = None) -> None:
    """File the outcome of processing ``event``; ``error`` says why it was ignored or failed."""
    event.status, event.error, event.processed_at = status, error, clock.now()
