"""Editing notification templates: a platform default, or a school's own wording.

Every template is checked when it is saved (its event exists, it uses only that event's
variables, its braces are plain ``{name}`` holes), so nothing malformed can reach a learner.
SMS bodies also get warnings, not errors: characters outside GSM-7 halve the length of a
segment, and a long text costs several segments, which an admin should see before saving.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, catalog_filter, ensure_visible, owning_institution
from lms_domain.errors import InvalidInput
from lms_domain.notifications.events import EVENTS, check_template, event_spec
from lms_domain.notifications.gsm import gsm7_length, sms_segments
from lms_domain.notifications.models import NotificationChannel, NotificationTemplate
from lms_domain.notifications.schemas import EventOut, TemplateIn, TemplateOut
from lms_domain.notifications.service import render, template_id_for


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
    return template_out(template)


def template_out(template: NotificationTemplate) -> TemplateOut:
    """A template as the API shows it, SMS ones with their warnings."""
    out = TemplateOut.model_validate(template)
    if template.channel is NotificationChannel.SMS:
        out.warnings = sms_warnings(template.body)
    return out


async def list_templates(*, session: AsyncSession, actor: Actor, event: str | None = None) -> list[TemplateOut]:
    """The platform defaults and, for a school's admin, their own templates."""
    actor.require_admin()
    stmt = catalog_filter(
        sa.select(NotificationTemplate).order_by(
            NotificationTemplate.event, NotificationTemplate.channel, NotificationTemplate.language
        ),
        NotificationTemplate.institution_id,
        actor,
    )
    if event is not None:
        stmt = stmt.where(NotificationTemplate.event == event_spec(event).name)
    return [template_out(template) for template in await session.scalars(stmt)]


async def delete_template(*, session: AsyncSession, actor: Actor, template_id: uuid.UUID) -> None:
    """Back to the platform's (or the built-in) text."""
    actor.require_admin()
    template = await session.get(NotificationTemplate, template_id)
    ensure_visible(template, actor, what="template")  # a school's admin cannot delete the platform's
    await session.delete(template)
    await session.flush()
