"""What the admin console's notification pages read: each event's templates as an admin sees
them (their own, the platform's or the built-in text), a live preview of a draft in both
languages, and the send log.

The preview checks a draft exactly as ``templates.save_template`` will (``check_template``) and
counts SMS parts with the sender's own GSM-7 rules (``gsm.sms_segments``, ``templates.sms_warnings``),
so what the editor promises is what saving and sending do.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, ensure_visible, tenant_filter
from lms_domain.errors import InvalidInput
from lms_domain.i18n import Language
from lms_domain.notifications.events import EVENTS, check_template, event_spec
from lms_domain.notifications.gsm import sms_segments
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationStatus,
    NotificationTemplate,
)
from lms_domain.notifications.schemas import TemplateOut
from lms_domain.notifications.service import render, template_id_for
from lms_domain.notifications.templates import list_templates, sms_warnings, template_out
from lms_domain.pagination import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT, keyset_page
from lms_domain.phones import normalize_msisdn
from lms_domain.tenancy.models import Learner, Phone

# What a preview fills each variable with: realistic lengths, so the part count is honest.
SAMPLE_VALUES: dict[str, str] = {
    "learner_name": "Amina Wanjiru",
    "course_title": "Form 1 Biology",
    "amount": "1,160",
    "receipt": "SJK3L2M1PQ",
    "ussd_code": "*384*123#",
    "shortcode": "22384",
    "due_date": "01/12/2026",
    "access_until": "05/12/2026",
    "attempt": "2",
    "attempts_total": "3",
    "plan_name": "Basic",
    "code": "SOMO-7K2P-9QXA",
    "quiz_title": "Cells and tissues",
    "score": "8",
    "max_score": "10",
    "summary": "3 lessons, 1 quiz passed",
    "week": "48",
    "title": "Payments unmatched",
    "detail": "2 paybill payments need matching",
    "institution_name": "Alpha School",
}

Source = Literal["own", "platform", "built_in"]


class LanguagePreview(BaseModel):
    """One language of a draft, filled with sample values, and what it costs as an SMS."""

    language: Language
    subject: str | None = None
    body: str = ""
    encoding: str | None = None  # SMS only: GSM-7 or UCS-2, of the filled text
    length: int | None = None
    parts: int | None = None
    warnings: list[str] = Field(default_factory=list)  # ``sms_warnings`` of the unfilled text
    error: str | None = None  # why saving would be refused


class TemplatePreview(BaseModel):
    event: str
    channel: NotificationChannel
    variables: list[str]
    sample_values: dict[str, str]
    languages: list[LanguagePreview]

    @property
    def ok(self) -> bool:
        return all(lang.error is None for lang in self.languages)


class EditorText(BaseModel):
    """The text of one language as the editor opens it: the actor's own template if there is
    one, else what applies today (the platform's or the built-in text)."""

    language: Language
    subject: str | None
    body: str
    source: Source
    own: TemplateOut | None  # the template saving would replace
    inherited_subject: str | None  # what applies when the own template is deleted
    inherited_body: str


class TemplateCell(BaseModel):
    language: Language
    source: Source
    template_id: uuid.UUID | None
    body: str
    warnings: list[str]


class TemplateRow(BaseModel):
    """One event on one channel, with the text that applies in each language."""

    event: str
    channel: NotificationChannel
    audience: str
    variables: list[str]
    cells: list[TemplateCell]


def _owner(actor: Actor) -> uuid.UUID | None:
    """Whose template the console edits: a school admin's school; a platform admin's default."""
    actor.require_admin()
    return None if actor.is_platform_admin else actor.institution_id


def _check_channel(event: str, channel: NotificationChannel) -> None:
    spec = event_spec(event)
    if channel not in spec.channels:
        raise InvalidInput(f"{event} is not sent by {channel.value}", code="channel_not_used")


def preview_template(
    *, event: str, channel: NotificationChannel, texts: dict[Language, tuple[str | None, str]]
) -> TemplatePreview:
    """A draft's texts (subject, body per language) filled with sample values, each with its
    SMS cost and warnings, and the reason saving would refuse it, if any."""
    spec = event_spec(event)
    languages = []
    for language, (subject, body) in texts.items():
        preview = LanguagePreview(language=language)
        try:
            check_template(spec, body, subject or "")
        except InvalidInput as exc:
            preview.error = exc.detail or str(exc)
            preview.body = body
            languages.append(preview)
            continue
        if not body.strip():
            preview.error = "the text is empty"
        preview.body = render(body, SAMPLE_VALUES)
        if channel is NotificationChannel.EMAIL:
            preview.subject = render(subject or spec.default_subject(language), SAMPLE_VALUES)
        else:
            info = sms_segments(preview.body)
            preview.encoding, preview.length, preview.parts = info.encoding, info.length, info.parts
            preview.warnings = sms_warnings(body)
        languages.append(preview)
    return TemplatePreview(
        event=spec.name,
        channel=channel,
        variables=sorted(spec.variables),
        sample_values={k: v for k, v in SAMPLE_VALUES.items() if k in spec.variables},
        languages=languages,
    )


async def editor_texts(
    *, session: AsyncSession, actor: Actor, event: str, channel: NotificationChannel
) -> list[EditorText]:
    """Both languages of ``event`` on ``channel`` as the actor would edit them."""
    owner = _owner(actor)
    _check_channel(event, channel)
    spec = event_spec(event)
    ids = {
        (who, lang): template_id_for(who, spec.name, channel, lang)
        for who in {owner, None}
        for lang in (Language.EN, Language.SW)
    }
    found = {
        t.id: t
        for t in await session.scalars(sa.select(NotificationTemplate).where(NotificationTemplate.id.in_(ids.values())))
    }
    out = []
    for lang in (Language.EN, Language.SW):
        own = found.get(ids[(owner, lang)])
        platform = found.get(ids[(None, lang)]) if owner is not None else None
        if platform is not None and platform.is_active:
            inherited_subject, inherited_body = platform.subject, platform.body
        else:
            inherited_subject, inherited_body = spec.default_subject(lang), spec.default_body(lang)
        if channel is NotificationChannel.SMS:
            inherited_subject = None
        if own is not None:
            subject, body, source = own.subject, own.body, "own"
        else:
            subject, body = inherited_subject, inherited_body
            source = "platform" if platform is not None and platform.is_active else "built_in"
        out.append(
            EditorText(
                language=lang,
                subject=subject,
                body=body,
                source=source,
                own=template_out(own) if own is not None else None,
                inherited_subject=inherited_subject,
                inherited_body=inherited_body,
            )
        )
    return out


async def template_overview(*, session: AsyncSession, actor: Actor, event: str | None = None) -> list[TemplateRow]:
    """Every event and channel with the text that applies in each language for the actor's
    school (for a platform admin, the platform defaults)."""
    owner = _owner(actor)
    saved = {t.id: t for t in await list_templates(session=session, actor=actor, event=event)}
    rows = []
    for spec in EVENTS.values():
        if event is not None and spec.name != event:
            continue
        for channel in spec.channels:
            cells = []
            for lang in (Language.EN, Language.SW):
                own = saved.get(template_id_for(owner, spec.name, channel, lang))
                platform = saved.get(template_id_for(None, spec.name, channel, lang))
                chosen, source = (own, "own") if own is not None and own.is_active else (None, "built_in")
                if chosen is None and platform is not None and platform.is_active:
                    chosen, source = platform, "platform"
                body = chosen.body if chosen is not None else spec.default_body(lang)
                cells.append(
                    TemplateCell(
                        language=lang,
                        source=source,
                        template_id=chosen.id if chosen is not None else None,
                        body=body,
                        warnings=sms_warnings(body) if channel is NotificationChannel.SMS else [],
                    )
                )
            rows.append(
                TemplateRow(
                    event=spec.name,
                    channel=channel,
                    audience=spec.audience,
                    variables=sorted(spec.variables),
                    cells=cells,
                )
            )
    return rows


async def get_template(*, session: AsyncSession, actor: Actor, template_id: uuid.UUID) -> TemplateOut:
    """One template the actor may see (their school's or a platform default); else NotFound."""
    actor.require_admin()
    template = await session.get(NotificationTemplate, template_id)
    ensure_visible(template, actor, catalog=True, what="template")
    assert template is not None
    return template_out(template)


# The send log ----------------------------------------------------------------------------


class NotificationLogQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: NotificationChannel | None = None
    status: NotificationStatus | None = None
    event: str | None = Field(default=None, max_length=64)
    recipient: str | None = Field(
        default=None, max_length=254, description="A learner's phone (any Kenyan form) or an email address."
    )
    since: datetime | None = None
    until: datetime | None = None
    oldest_first: bool = False
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class NotificationLogEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    created_at: datetime
    institution_id: uuid.UUID | None
    learner_id: uuid.UUID | None
    learner_name: str | None = None
    event: str
    channel: NotificationChannel
    language: Language
    recipient: str
    subject: str | None
    body: str
    status: NotificationStatus
    scheduled_for: datetime | None
    sent_at: datetime | None
    segments: int | None
    cost_minor: int | None
    attempts: int
    error: str | None


async def list_notification_log(
    *, session: AsyncSession, actor: Actor, query: NotificationLogQuery
) -> tuple[list[NotificationLogEntry], str | None]:
    """The send log, newest first (or oldest), scoped to the actor's school; a phone matches
    the messages sent to it and those of the learners it belongs to."""
    actor.require_admin()
    log = NotificationLog
    stmt = (
        tenant_filter(sa.select(log), log.institution_id, actor)
        .add_columns(Learner.display_name)
        .outerjoin(Learner, Learner.id == log.learner_id)
    )
    if query.channel is not None:
        stmt = stmt.where(log.channel == query.channel)
    if query.status is not None:
        stmt = stmt.where(log.status == query.status)
    if query.event:
        stmt = stmt.where(log.event == query.event)
    if query.recipient:
        if "@" in query.recipient:
            stmt = stmt.where(sa.func.lower(log.recipient) == query.recipient.strip().lower())
        else:
            e164 = normalize_msisdn(query.recipient)
            learners_on_phone = (
                sa.select(Learner.id).join(Phone, Phone.id == Learner.phone_id).where(Phone.e164 == e164)
            )
            stmt = stmt.where(sa.or_(log.recipient == e164, log.learner_id.in_(learners_on_phone)))
    if query.since is not None:
        stmt = stmt.where(log.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(log.created_at < query.until)
    rows, cursor = await keyset_page(
        session, stmt, log, descending=not query.oldest_first, cursor=query.cursor, limit=query.limit
    )
    items = []
    for entry, name in rows:
        item = NotificationLogEntry.model_validate(entry)
        item.learner_name = name
        items.append(item)
    return items, cursor
