"""Opting out of SMS: STOP by SMS sets it, and every notification checks it before sending."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.ids import natural_id
from lms_domain.notifications.models import NotificationChannel, NotificationPreference
from lms_domain.tenancy.models import Learner

ALL_EVENTS = "*"


async def set_sms_opt_out(
    *, session: AsyncSession, learner_ids: Iterable[uuid.UUID], opted_out: bool, now: datetime
) -> int:
    """Turn every SMS notification off (STOP) or back on (START) for these learners; the number
    of learners whose setting changed."""
    changed = 0
    for learner_id in learner_ids:
        learner = await session.get(Learner, learner_id)
        if learner is None:
            continue
        pref_id = natural_id("notification_preference", learner_id, NotificationChannel.SMS.value, ALL_EVENTS)
        pref = await session.get(NotificationPreference, pref_id)
        if pref is None:
            pref = NotificationPreference(
                id=pref_id,
                institution_id=learner.institution_id,
                learner_id=learner_id,
                channel=NotificationChannel.SMS,
                event=ALL_EVENTS,
                enabled=not opted_out,
                created_at=now,
                updated_at=now,
            )
            session.add(pref)
            changed += 1
        elif pref.enabled is opted_out:
            pref.enabled, pref.updated_at = not opted_out, now
            changed += 1
    await session.flush()
    return changed


async def sms_allowed(*, session: AsyncSession, learner_id: uuid.UUID, event: str) -> bool:
    """Whether a notification ``event`` may go to the learner by SMS: not if they opted out of
    every SMS, or of this event."""
    disabled = await session.scalar(
        sa.select(sa.func.count(NotificationPreference.id)).where(
            NotificationPreference.learner_id == learner_id,
            NotificationPreference.channel == NotificationChannel.SMS,
            NotificationPreference.event.in_([ALL_EVENTS, event]),
            NotificationPreference.enabled.is_(False),
        )
    )
    return not disabled
