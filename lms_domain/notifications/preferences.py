"""Opting out of SMS: STOP by SMS sets it, and every notification checks it before sending."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import NotFound
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


async def channel_allowed(
    *, session: AsyncSession, learner_id: uuid.UUID, channel: NotificationChannel, event: str
) -> bool:
    """Whether a notification ``event`` may go to the learner on ``channel``.

    SMS is on unless they opted out (of every SMS, or of this event): it is how most learners
    hear from us. Email is off unless they turned it on, since few learners read one; a
    setting for the event wins over the one for every event."""
    rows = (
        await session.execute(
            sa.select(NotificationPreference.event, NotificationPreference.enabled).where(
                NotificationPreference.learner_id == learner_id,
                NotificationPreference.channel == channel,
                NotificationPreference.event.in_([ALL_EVENTS, event]),
            )
        )
    ).all()
    settings = dict(rows)
    if channel is NotificationChannel.SMS:
        return all(settings.values())
    return settings.get(event, settings.get(ALL_EVENTS, False))


async def sms_allowed(*, session: AsyncSession, learner_id: uuid.UUID, event: str) -> bool:
    """Whether a notification ``event`` may go to the learner by SMS: not if they opted out of
    every SMS, or of this event."""
    return await channel_allowed(session=session, learner_id=learner_id, channel=NotificationChannel.SMS, event=event)


async def set_preference(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    channel: NotificationChannel,
    event: str,
    enabled: bool,
    now: datetime,
) -> NotificationPreference:
    """Turn one channel on or off for one event (or ``*``, every event)."""
    learner = await session.get(Learner, learner_id)
    if learner is None:
        raise NotFound("learner not found")
    pref_id = natural_id("notification_preference", learner_id, channel.value, event)
    pref = await session.get(NotificationPreference, pref_id)
    if pref is None:
        pref = NotificationPreference(
            id=pref_id,
            institution_id=learner.institution_id,
            learner_id=learner_id,
            channel=channel,
            event=event,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        session.add(pref)
    elif pref.enabled is not enabled:
        pref.enabled, pref.updated_at = enabled, now
    await session.flush()
    return pref
