"""Opting out of SMS: STOP by SMS sets it, and every notification checks it before sending.
A learner (or their school's staff) also switches channels and single events on or off."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible
from lms_domain.errors import InvalidInput, NotFound
from lms_domain.ids import natural_id
from lms_domain.notifications.events import EVENTS, EventSpec, event_spec
from lms_domain.notifications.models import NotificationChannel, NotificationPreference
from lms_domain.notifications.schemas import (
    ChannelSwitch,
    EventSwitches,
    NotificationPreferences,
    NotificationPreferencesUpdate,
)
from lms_domain.tenancy.models import Learner
from lms_domain.tenancy.phone_access import set_language

ALL_EVENTS = "*"
# A channel's switch for every event, until the learner sets one: SMS on, email off.
CHANNEL_DEFAULTS = {NotificationChannel.SMS: True, NotificationChannel.EMAIL: False}


async def set_sms_opt_out(
    *, session: AsyncSession, learner_ids: Iterable[uuid.UUID], opted_out: bool, now: datetime
) -> int:
    """Turn every SMS notification off (STOP) or back on (START) for these learners; the number
    of learners whose setting changed."""
    changed = 0
    for learner_id in learner_ids:
        pref_id = natural_id("notification_preference", learner_id, NotificationChannel.SMS.value, ALL_EVENTS)
        before = await session.get(NotificationPreference, pref_id)
        was = None if before is None else before.enabled
        try:
            await set_preference(
                session=session,
                learner_id=learner_id,
                channel=NotificationChannel.SMS,
                event=ALL_EVENTS,
                enabled=not opted_out,
                now=now,
            )
        except NotFound:
            continue
        changed += was is None or was is opted_out
    return changed


def allows(channel: NotificationChannel, settings: Mapping[str, bool], event: str) -> bool:
    """Whether a learner's settings for ``channel`` (by event, ``*`` for every event) let
    ``event`` through. SMS is on unless they opted out (of every SMS, or of this event): it is
    how most learners hear from us. Email is off unless they turned it on, since few learners
    read one; a setting for the event wins over the one for every event."""
    if channel is NotificationChannel.SMS:
        return all(settings.values())
    return settings.get(event, settings.get(ALL_EVENTS, CHANNEL_DEFAULTS[channel]))


async def settings_of(
    session: AsyncSession, learner_ids: Collection[uuid.UUID], event: str
) -> dict[tuple[uuid.UUID, NotificationChannel], dict[str, bool]]:
    """The settings bearing on ``event`` for these learners, by (learner, channel): one query."""
    found: dict[tuple[uuid.UUID, NotificationChannel], dict[str, bool]] = {}
    rows = await session.execute(
        sa.select(
            NotificationPreference.learner_id,
            NotificationPreference.channel,
            NotificationPreference.event,
            NotificationPreference.enabled,
        ).where(
            NotificationPreference.learner_id.in_(learner_ids),
            NotificationPreference.event.in_([ALL_EVENTS, event]),
        )
    )
    for learner_id, channel, name, enabled in rows:
        found.setdefault((learner_id, channel), {})[name] = enabled
    return found


async def channel_allowed(
    *, session: AsyncSession, learner_id: uuid.UUID, channel: NotificationChannel, event: str
) -> bool:
    """Whether a notification ``event`` may go to the learner on ``channel`` (see ``allows``)."""
    settings = await settings_of(session, [learner_id], event)
    return allows(channel, settings.get((learner_id, channel), {}), event)


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


async def _learner_for(session: AsyncSession, actor: Actor, learner_id: uuid.UUID) -> Learner:
    """The learner, if the actor is them or staff of their school; anyone else finds nothing."""
    learner = await session.get(Learner, learner_id)
    ensure_visible(learner, actor, what="learner")
    assert learner is not None
    if not actor.is_staff and actor.learner_id != learner.id:
        raise NotFound("learner not found")
    return learner


def learner_event(name: str) -> EventSpec:
    """The event called ``name`` if it is one sent to learners (admin alerts are not)."""
    spec = event_spec(name)
    if spec.audience != "learner":
        raise InvalidInput(f"{name} is not sent to learners", code="unknown_event", event=name)
    return spec


async def preferences_of(*, session: AsyncSession, actor: Actor, learner_id: uuid.UUID) -> NotificationPreferences:
    """The learner's language, channel switches and each learner event's own settings."""
    learner = await _learner_for(session, actor, learner_id)
    rows = await session.execute(
        sa.select(NotificationPreference.channel, NotificationPreference.event, NotificationPreference.enabled).where(
            NotificationPreference.learner_id == learner.id
        )
    )
    settings = {(channel, event): enabled for channel, event, enabled in rows}
    sms, email = NotificationChannel.SMS, NotificationChannel.EMAIL
    return NotificationPreferences(
        language=learner.language,
        sms=ChannelSwitch(enabled=settings.get((sms, ALL_EVENTS), CHANNEL_DEFAULTS[sms])),
        email=ChannelSwitch(enabled=settings.get((email, ALL_EVENTS), CHANNEL_DEFAULTS[email])),
        events={
            spec.name: EventSwitches(sms=settings.get((sms, spec.name)), email=settings.get((email, spec.name)))
            for spec in EVENTS.values()
            if spec.audience == "learner"
        },
    )


async def clear_preference(
    *, session: AsyncSession, learner_id: uuid.UUID, channel: NotificationChannel, event: str
) -> None:
    """Drop the learner's own setting for one event: it follows the channel's switch again."""
    pref = await session.get(
        NotificationPreference, natural_id("notification_preference", learner_id, channel.value, event)
    )
    if pref is not None:
        await session.delete(pref)
        await session.flush()


async def update_preferences(
    *,
    session: AsyncSession,
    actor: Actor,
    learner_id: uuid.UUID,
    data: NotificationPreferencesUpdate,
    now: datetime,
) -> NotificationPreferences:
    """Change what ``data`` names (language, channel switches, events' own settings); every
    event is checked before anything is written."""
    learner = await _learner_for(session, actor, learner_id)
    changes: list[tuple[NotificationChannel, str, bool | None]] = []
    for name, switches in data.events.items():
        spec = learner_event(name)
        for field in sorted(switches.model_fields_set):
            channel = NotificationChannel(field)
            enabled: bool | None = getattr(switches, field)
            if enabled is not None and channel not in spec.channels:
                raise InvalidInput(f"{name} is not sent by {channel.value}", code="channel_not_used", event=name)
            changes.append((channel, name, enabled))
    for channel, switch in ((NotificationChannel.SMS, data.sms), (NotificationChannel.EMAIL, data.email)):
        if switch is not None:
            changes.append((channel, ALL_EVENTS, switch.enabled))
    if data.language is not None:
        await set_language(session=session, learner_id=learner.id, language=data.language)
    for channel, event, enabled in changes:
        if enabled is None:
            await clear_preference(session=session, learner_id=learner.id, channel=channel, event=event)
        else:
            await set_preference(
                session=session, learner_id=learner.id, channel=channel, event=event, enabled=enabled, now=now
            )
    return await preferences_of(session=session, actor=actor, learner_id=learner.id)
