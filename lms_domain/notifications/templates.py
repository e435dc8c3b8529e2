"""Editing notification templates: a platform default, or a school's own wording.

Every template is checked when it is saved (its event exists, it uses only that event's
variables, its braces are plain ``{name}`` holes), so nothing malformed can reach a learner.
SMS bodies also get warnings, not errors: characters outside GSM-7 halve the length of a
segment, and a long text costs several segments, which an admin should see before saving.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, owning_institution
from lms_domain.errors import InvalidInput, NotFound
from lms_domain.i18n import Language
from lms_domain.notifications.events import EVENTS, check_template, event_spec
from lms_domain.notifications.gsm import gsm7_length, sms_segments
from lms_domain.notifications.models import NotificationChannel, NotificationTemplate
from lms_domain.notifications.service import render, template_id_for


class TemplateIn(BaseModel):
    event: str = Field(max_length=64)
    channel: NotificationChannel = NotificationChannel.SMS
    language: Language
    subject: str | None = Field(default=None, max_length=200)
    body: str = Field(min_length=1, max_length=2000)
    institution_id: uuid.UUID | None = None  # platform admins only: NULL is the platform default
    is_active: bool = True


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    event: str
    channel: NotificationChannel
    language: Language
    subject: str | None
    body: str
    variables: list[str]
    is_active: bool
    updated_at: datetime | None = None
    warnings: list[str] = []


class EventOut(BaseModel):
    name: str
    variables: list[str]
    channels: list[NotificationChannel]
    audience: str


def list_events() -> list[EventOut]:
    return [
        EventOut(name=s.name, variables=sorted(s.variables), channels=list(s.channels), audience=s.audience)
        for s in EVENTS.values()
    ]


def sms_warnings(body: str) -> list[str]:
    """What an admin should know before saving an SMS text, with sample values filled in."""
    sample = render(body, {})
    info = sms_segments(sample)
    warnings: list[str] = []
    if gsm7_length(sample) is None:
        odd = "".join(sorted({c for c in sample if gsm7_length(c) is None}))
        warnings.append(f"characters outside GSM-7 ({odd}) make it UCS-2: 70 characters a segment")
    if info.parts > 1:
        warnings.append(f"{info.parts} SMS segments before the variables are filled in")
    return warnings


async def save_template(*, session: AsyncSession, actor: Actor, data: TemplateIn, now: datetime) -> TemplateOut:
    """Create or replace the template for (owner, event, channel, language)."""
    actor.require_admin()
    owner = owning_institution(actor, data.institution_id)
    spec = event_spec(data.event)
    if data.channel not in spec.channels:
        raise InvalidInput(
            f"{data.event} is not sent by {data.channel.value}; it goes by {', '.join(c.value for c in spec.channels)}",
            code="channel_not_used",
        )
    if data.channel is NotificationChannel.SMS and data.subject is not None:
        raise InvalidInput("an SMS has no subject", code="sms_subject")
    used = check_template(spec, data.body, data.subject or "")
    template_id = template_id_for(owner, data.event, data.channel, data.language)
    template = await session.get(NotificationTemplate, template_id)
    if template is None:
        template = NotificationTemplate(
            id=template_id,
            institution_id=owner,
            event=data.event,
            channel=data.channel,
            language=data.language,
            created_at=now,
        )
        session.add(template)
    template.subject, template.body, template.variables = data.subject, data.body, sorted(used)
    template.is_active, template.updated_at = data.is_active, now
    await session.flush()
    out = TemplateOut.model_validate(template)
    if data.channel is NotificationChannel.SMS:
        out.warnings = sms_warnings(data.body)
    return out


async def list_templates(
    *, session: AsyncSession, actor: Actor, event: str | None = None
) -> Sequence[NotificationTemplate]:
    """The platform defaults and, for a school's admin, their own templates."""
    actor.require_admin()
    stmt = sa.select(NotificationTemplate).order_by(
        NotificationTemplate.event, NotificationTemplate.channel, NotificationTemplate.language
    )
    if not actor.is_platform_admin:
        stmt = stmt.where(
            sa.or_(
                NotificationTemplate.institution_id == actor.institution_id,
                NotificationTemplate.institution_id.is_(None),
            )
        )
    if event is not None:
        stmt = stmt.where(NotificationTemplate.event == event_spec(event).name)
    return (await session.scalars(stmt)).all()


async def delete_template(*, session: AsyncSession, actor: Actor, template_id: uuid.UUID) -> None:
    """Back to the platform's (or the built-in) text."""
    actor.require_admin()
    template = await session.get(NotificationTemplate, template_id)
    if template is None or (not actor.is_platform_admin and template.institution_id != actor.institution_id):
        raise NotFound("template not found")
    await session.delete(template)
    await session.flush()
