"""The per-learner lock every flow that counts or changes a learner's own state takes."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import NotFound
from lms_domain.tenancy.models import Learner


async def locked_learner(session: AsyncSession, learner_id: uuid.UUID) -> Learner:
    """The learner, with a transaction-scoped lock on their own state (attempts, PIN tries):
    two parallel requests cannot each see room for one more attempt, or one more wrong PIN.

    On Postgres this is an advisory lock keyed by the learner, not a row lock: an edit of the
    learner row takes the change-feed counter first and the row second, and a row lock here
    (row, then counter) could deadlock with it. SQLite's writers are serialised already.
    The learner is re-read, so a copy already in the session cannot hide a concurrent change.
    """
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(learner_id.bytes[:8], "big", signed=True)
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
    learner = await session.get(Learner, learner_id, populate_existing=True)
    if learner is None or learner.deleted_at is not None:
        raise NotFound("learner not found")
    return learner
