"""The daily clean-up: rows whose purpose has passed.

* idempotency keys past their ``expires_at`` (kept at least 24 h, as the API promises);
* payment intents created but never sent to a provider (the push failed before the request
  left, or the process died in between) after a day: expired, so nothing mistakes them for a
  payment in flight. Intents that did reach a provider are left to the poller and the nightly
  reconciliation, which can ask the provider what happened;
* refresh tokens that expired or were revoked more than 30 days ago (kept that long so reuse
  of a rotated token is still recognised and answered as such).

Deletes go in bounded batches so a first run over a large backlog never holds a long lock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.payments.models import IntentStatus, PaymentIntent
from lms_domain.platform.models import IdempotencyKey, RefreshToken

UNSENT_INTENT_TTL = timedelta(days=1)
TOKEN_RETENTION = timedelta(days=30)


async def _delete_in_batches(sessions: async_sessionmaker[AsyncSession], model: Any, condition: Any, batch: int) -> int:
    deleted = 0
    while True:
        async with sessions() as session, session.begin():
            ids = list(await session.scalars(sa.select(model.id).where(condition).limit(batch)))
            if not ids:
                return deleted
            await session.execute(sa.delete(model).where(model.id.in_(ids)))
            deleted += len(ids)


async def clean_up(*, sessions: async_sessionmaker[AsyncSession], now: datetime, batch: int = 1000) -> dict[str, int]:
    """One pass; how many rows of each kind went."""
    keys = await _delete_in_batches(sessions, IdempotencyKey, IdempotencyKey.expires_at < now, batch)
    tokens = await _delete_in_batches(
        sessions,
        RefreshToken,
        sa.or_(
            RefreshToken.expires_at < now - TOKEN_RETENTION,
            RefreshToken.revoked_at < now - TOKEN_RETENTION,
        ),
        batch,
    )
    async with sessions() as session, session.begin():
        expired = await session.execute(
            sa.update(PaymentIntent)
            .where(
                PaymentIntent.status == IntentStatus.CREATED,
                PaymentIntent.provider_request_id.is_(None),
                PaymentIntent.created_at < now - UNSENT_INTENT_TTL,
            )
            .values(status=IntentStatus.EXPIRED, resolved_at=now, updated_at=now)
        )
    return {"idempotency_keys": keys, "refresh_tokens": tokens, "intents_expired": expired.rowcount or 0}  # type: ignore[attr-defined]
