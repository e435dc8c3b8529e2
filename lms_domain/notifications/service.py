"""Notifications to learners (SMS, email) and alerts to admins (email): queued in the send log
inside the transaction that caused them (a payment, a renewal), then delivered through the
``SmsSender`` and ``EmailSender`` ports.

Queuing in the same transaction means a notification exists exactly when its cause does,
and ``dedupe_key`` makes a retried cause queue it once. The opt-out (STOP) and the quiet hours
are checked when queuing and again when sending, so a learner who texts STOP after a message was
queued does not get it, and nothing queued at 21:59 goes out at 22:01. A failed send is tried
again with exponential backoff, ``SEND_ATTEMPTS`` times in all; each try is a ``NotificationTry``.
"""

from __future__ import annotations

import functools
import logging
import string
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.db import insert_once, serialize_on
from lms_domain.i18n import Language
from lms_domain.ids import natural_id, new_id
from lms_domain.messaging.service import message_lock_key, reported_outcome
from lms_domain.notifications.events import event_spec
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationStatus,
    NotificationTemplate,
    NotificationTry,
)
from lms_domain.notifications.ports import EmailSender, EmailSendError, SmsSender, SmsSendError
from lms_domain.notifications.preferences import channel_allowed
from lms_domain.notifications.quiet_hours import DEFAULT_QUIET_HOURS, QuietHours
from lms_domain.subscriptions.models import DunningSchedule
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User

log = logging.getLogger("somo.notifications")

REPLY_EVENT = "sms_reply"  # a reply to the learner's own SMS command: not a notification
ADMIN_EVENT = "admin_alert"
SEND_ATTEMPTS = 3  # tries in all; a message still failing after them is failed, and stays in the log
RETRY_BASE = timedelta(minutes=2)  # then 8 minutes: x4 each time
CLAIM_LEASE = timedelta(minutes=5)  # far longer than any send takes (adapters time out in seconds)


CONTACT_VARIABLES = ("ussd_code", "shortcode")


def fill_contacts(text: str, contacts: Mapping[str, str]) -> str:
    """``text`` with the deployment's contact points filled: a plain replacement, since a
    learner's name with braces in it must not be parsed as a template."""
    for name in CONTACT_VARIABLES:
        if name in contacts:
            text = text.replace("{" + name + "}", contacts[name])
    return text


@dataclass(frozen=True, slots=True)
class Senders:
    """The notifier: one sender per channel (email may be absent: then email waits, queued),
    and the deployment's contact points. ``{ussd_code}`` and ``{shortcode}`` are settings, not
    facts a payment flow or a job knows, so every text keeps them as written until it is sent."""

    sms: SmsSender
    email: EmailSender | None = None
    contacts: Mapping[str, str] = field(default_factory=dict)

    def finish(self, text: str) -> str:
        return fill_contacts(text, self.contacts)


@dataclass(frozen=True, slots=True)
class Rendered:
    template_id: uuid.UUID | None  # None: the event's built-in text
    language: Language
    subject: str | None
    body: str


def template_id_for(
    institution_id: uuid.UUID | None, event: str, channel: NotificationChannel, language: Language
) -> uuid.UUID:
    return natural_id("notification_template", institution_id, event, channel.value, language.value)


async def template_text(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID | None,
    event: str,
    channel: NotificationChannel,
    language: Language,
) -> Rendered:
    """The unfilled text of ``event`` for ``channel``: the school's own template in
    ``language``, else the platform's, else the same two in English (one query), else the
    built-in text."""
    spec = event_spec(event)
    preference = [
        template_id_for(owner, event, channel, lang)
        for owner, lang in (
            (institution_id, language),
            (None, language),
            (institution_id, Language.EN),
            (None, Language.EN),
        )
    ]
    found = {
        t.id: t
        for t in await session.scalars(
            sa.select(NotificationTemplate).where(
                NotificationTemplate.id.in_(preference), NotificationTemplate.is_active.is_(True)
            )
        )
    }
    template = next((found[key] for key in preference if key in found), None)
    if template is not None:
        return Rendered(
            template.id, template.language, template.subject or spec.default_subject(template.language), template.body
        )
    return Rendered(None, language, spec.default_subject(language), spec.default_body(language))


async def rendered_text(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID | None,
    event: str,
    channel: NotificationChannel,
    language: Language,
    values: Mapping[str, object],
) -> Rendered:
    """``template_text`` with its variables filled."""
    text = await template_text(session, institution_id=institution_id, event=event, channel=channel, language=language)
    subject = render(text.subject, values) if text.subject is not None else None
    return Rendered(text.template_id, text.language, subject, render(text.body, values))


async def quiet_hours_for(session: AsyncSession, institution_id: uuid.UUID | None) -> QuietHours:
    """The school's quiet hours (its dunning schedule's), else 22:00-07:00."""
    if institution_id is None:
        return DEFAULT_QUIET_HOURS
    row = (
        await session.execute(
            sa.select(DunningSchedule.quiet_start_hour, DunningSchedule.quiet_end_hour).where(
                DunningSchedule.institution_id == institution_id
            )
        )
    ).first()
    return QuietHours(row[0], row[1]) if row is not None else DEFAULT_QUIET_HOURS


@functools.lru_cache(maxsize=512)
def _fields(body: str) -> frozenset[str]:
    """The names a template fills, parsed once per text (a batch job renders thousands)."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(body) if name)


def render(body: str, values: Mapping[str, object]) -> str:
    """``body`` with its ``{variables}`` filled; a variable without a value stays visible
    rather than failing the cause's transaction (templates are checked when saved), and the
    sender fills the deployment's own (``Senders.finish``)."""
    return body.format_map({name: values.get(name, "{" + name + "}") for name in _fields(body)})


def log_row(
    *,
    channel: NotificationChannel,
    recipient: str,
    body: str,
    event: str,
    language: Language,
    dedupe_key: str,
    now: datetime,
    subject: str | None = None,
    scheduled_for: datetime | None = None,
    learner_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    institution_id: uuid.UUID | None = None,
    template_id: uuid.UUID | None = None,
    status: NotificationStatus = NotificationStatus.QUEUED,
) -> dict[str, object]:
    """One send-log row's values, for ``queue_notification`` or a batch insert."""
    return {
        "id": new_id(),
        "institution_id": institution_id,
        "learner_id": learner_id,
        "user_id": user_id,
        "template_id": template_id,
        "event": event,
        "channel": channel,
        "language": language,
        "recipient": recipient,
        "subject": subject[:200] if subject else None,
        "body": body,
        "status": status,
        "dedupe_key": dedupe_key[:128],
        "scheduled_for": scheduled_for,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
    }


async def queue_notification(session: AsyncSession, row: dict[str, object]) -> uuid.UUID | None:
    """Put one message (a ``log_row``) in the send log for ``deliver``, once per ``dedupe_key``:
    the new entry's id, or None when that key was queued before."""
    return await insert_once(session, NotificationLog, row, unique=["dedupe_key"])


async def notify_learner(
    *,
    session: AsyncSession,
    learner_id: uuid.UUID,
    event: str,
    values: Mapping[str, object],
    dedupe_key: str,
    now: datetime,
) -> list[uuid.UUID]:
    """Queue ``event`` for a learner on each channel it uses, in their language, once per
    ``dedupe_key`` (the SMS keeps the key as given; email adds ``:email``). After quiet hours
    if now is quiet. An SMS the learner opted out of is stored as suppressed, so the log shows
    why it never went; email they never turned on is not stored. The new entries' ids."""
    spec = event_spec(event)
    row = (
        await session.execute(
            sa.select(Learner, Phone.e164, User.email)
            .outerjoin(Phone, Phone.id == Learner.phone_id)
            .outerjoin(User, User.id == Learner.user_id)
            .where(Learner.id == learner_id)
        )
    ).first()
    if row is None:
        return []
    learner, e164, email = row
    values = {"learner_name": learner.display_name, **values}
    queued: list[uuid.UUID] = []
    quiet: QuietHours | None = None  # looked up only when a message is queued
    for channel in spec.channels:
        recipient = e164 if channel is NotificationChannel.SMS else email
        if not recipient:
            continue
        allowed = await channel_allowed(session=session, learner_id=learner.id, channel=channel, event=event)
        if not allowed and channel is NotificationChannel.EMAIL:
            continue
        quiet = quiet or await quiet_hours_for(session, learner.institution_id)
        text = await rendered_text(
            session,
            institution_id=learner.institution_id,
            event=event,
            channel=channel,
            language=learner.language,
            values=values,
        )
        log_id = await queue_notification(
            session,
            log_row(
                channel=channel,
                recipient=recipient,
                subject=text.subject if channel is NotificationChannel.EMAIL else None,
                body=text.body,
                event=event,
                language=text.language,
                dedupe_key=dedupe_key if channel is NotificationChannel.SMS else f"{dedupe_key}:email",
                now=now,
                scheduled_for=quiet.next_allowed(now) if allowed else None,
                learner_id=learner.id,
                institution_id=learner.institution_id,
                template_id=text.template_id,
                status=NotificationStatus.QUEUED if allowed else NotificationStatus.SUPPRESSED,
            ),
        )
        if log_id is not None:
            queued.append(log_id)
    return queued


async def alert_admins(
    *,
    session: AsyncSession,
    institution_id: uuid.UUID | None,
    title: str,
    detail: str,
    dedupe_key: str,
    now: datetime,
) -> list[uuid.UUID]:
    """Email an alert to the school's admins (the platform's when the school has none with an
    email, or for a platform-wide alert), at once: a page is not held for quiet hours."""
    name = "Somo"
    if institution_id is not None:
        name = await session.scalar(sa.select(Institution.name).where(Institution.id == institution_id)) or name
    admins = sa.select(User.id, User.email).where(User.is_active.is_(True), User.email.is_not(None))
    recipients = []
    if institution_id is not None:
        recipients = list(
            await session.execute(
                admins.where(User.institution_id == institution_id, User.role == Role.INSTITUTION_ADMIN)
            )
        )
    if not recipients:
        recipients = list(await session.execute(admins.where(User.role == Role.PLATFORM_ADMIN)))
    text = await rendered_text(
        session,
        institution_id=institution_id,
        event=ADMIN_EVENT,
        channel=NotificationChannel.EMAIL,
        language=Language.EN,
        values={"title": title, "detail": detail, "institution_name": name, "learner_name": ""},
    )
    queued: list[uuid.UUID] = []
    for user_id, email in recipients:
        log_id = await queue_notification(
            session,
            log_row(
                channel=NotificationChannel.EMAIL,
                recipient=email or "",  # the query keeps only users with an email
                subject=text.subject,
                body=text.body,
                event=ADMIN_EVENT,
                language=text.language,
                dedupe_key=f"{dedupe_key}:{user_id}",
                now=now,
                user_id=user_id,
                institution_id=institution_id,
                template_id=text.template_id,
            ),
        )
        if log_id is not None:
            queued.append(log_id)
    if not recipients:
        log.error("admin alert with nobody to send it to", extra={"title": title, "detail": detail})
    return queued


@dataclass(frozen=True, slots=True)
class _Outcome:
    status: NotificationStatus
    message_id: str | None = None
    error: str | None = None
    retryable: bool = False
    parts: int | None = None
    cost_minor: int | None = None


async def _send(senders: Senders, entry: NotificationLog) -> _Outcome:
    """One try on the entry's channel; never raises for a provider's failure."""
    if entry.channel is NotificationChannel.EMAIL:
        if senders.email is None:
            return _Outcome(NotificationStatus.FAILED, error="no email sender configured", retryable=True)
        try:
            sent = await senders.email.send(to=[entry.recipient], subject=entry.subject or "", text=entry.body)
        except EmailSendError as exc:
            return _Outcome(NotificationStatus.FAILED, error=exc.detail[:500], retryable=exc.retryable)
        return _Outcome(NotificationStatus.SENT, message_id=sent.message_id)
    try:
        result = await senders.sms.send(entry.body, [entry.recipient])
    except SmsSendError as exc:
        return _Outcome(NotificationStatus.FAILED, error=exc.detail[:500], retryable=exc.retryable)
    mine = next((r for r in result.recipients if r.number == entry.recipient), None)
    cost = mine.cost_minor if mine else None
    if mine is not None and mine.accepted:
        return _Outcome(NotificationStatus.SENT, message_id=mine.message_id, parts=result.parts, cost_minor=cost)
    return _Outcome(
        NotificationStatus.FAILED,
        error=mine.status if mine else result.summary,
        retryable=bool(mine is not None and mine.retryable),
        parts=result.parts,
        cost_minor=cost,
    )


def _is_notification(entry: NotificationLog) -> bool:
    """Whether quiet hours and opt-outs apply: not to a reply the learner asked for, nor to a page."""
    return entry.event not in (REPLY_EVENT, ADMIN_EVENT)


async def deliver(
    *, sessions: async_sessionmaker[AsyncSession], senders: Senders, log_id: uuid.UUID, clock: Clock
) -> NotificationStatus | None:
    """Send one queued message and record what the provider said. A retryable failure leaves it
    queued for a later pass (after 2, then 8 minutes) until ``SEND_ATTEMPTS`` tries are spent;
    anything else is final. None when there was nothing to do.

    Claimed first, under a row lock: ``attempts`` bumped and the message leased for
    ``CLAIM_LEASE`` (it stays queued, not due), so two senders never send it together, and a
    process killed between the claim and the answer leaves it to be sent again when the lease
    runs out: at least once, never lost."""
    async with sessions() as session, session.begin():
        entry = await session.get(NotificationLog, log_id, with_for_update=True, populate_existing=True)
        now = clock.now()
        if entry is None or entry.status is not NotificationStatus.QUEUED:
            return None
        if entry.scheduled_for is not None and entry.scheduled_for > now:
            return None
        if entry.attempts >= SEND_ATTEMPTS:  # its last claim never got an answer recorded
            entry.status, entry.updated_at = NotificationStatus.FAILED, now
            entry.error = entry.error or f"no answer recorded after {entry.attempts} tries"
            return entry.status
        if _is_notification(entry):
            if entry.learner_id is not None and not await channel_allowed(
                session=session, learner_id=entry.learner_id, channel=entry.channel, event=entry.event
            ):
                entry.status, entry.updated_at = NotificationStatus.SUPPRESSED, now
                return entry.status
            quiet = await quiet_hours_for(session, entry.institution_id)
            if quiet.is_quiet(now):
                entry.scheduled_for, entry.updated_at = quiet.next_allowed(now), now
                return NotificationStatus.QUEUED
        entry.attempts += 1
        entry.scheduled_for = now + CLAIM_LEASE  # claimed; the answer below replaces the lease
        entry.body, entry.subject = senders.finish(entry.body), senders.finish(entry.subject) if entry.subject else None
        attempts = entry.attempts
        await session.flush()
        session.expunge(entry)  # read below, after this transaction, without a reload
    outcome = await _send(senders, entry)
    status = outcome.status
    if status is NotificationStatus.FAILED and outcome.retryable and attempts < SEND_ATTEMPTS:
        status = NotificationStatus.QUEUED
    async with sessions() as session, session.begin():
        if outcome.message_id is not None and entry.channel is NotificationChannel.SMS:
            await serialize_on(session, message_lock_key(outcome.message_id))  # with its delivery reports
        current = await session.get(NotificationLog, log_id, populate_existing=True)
        if current is None:
            return None
        now = clock.now()
        session.add(
            NotificationTry(
                id=new_id(),
                notification_id=log_id,
                attempt=attempts,
                tried_at=now,
                outcome=outcome.status,
                provider_message_id=outcome.message_id,
                error=outcome.error,
            )
        )
        current.status, current.provider_message_id, current.error = status, outcome.message_id, outcome.error
        current.segments, current.cost_minor, current.updated_at = outcome.parts, outcome.cost_minor, now
        current.sent_at = now if status is NotificationStatus.SENT else None
        current.scheduled_for = now + RETRY_BASE * 4 ** (attempts - 1) if status is NotificationStatus.QUEUED else None
        if outcome.message_id is not None and entry.channel is NotificationChannel.SMS:
            early = await reported_outcome(session=session, message_id=outcome.message_id)
            if early is not None:
                current.status, reason = early
                current.error = reason or current.error
                status = current.status
    if status is not NotificationStatus.SENT:
        log.warning(
            "notification not sent",
            extra={"notification_id": str(log_id), "status": status.value, "error": outcome.error, "try": attempts},
        )
    return status


async def due_notifications(*, session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Queued messages whose time has come (quiet hours and retries schedule some for later), oldest first."""
    rows = await session.scalars(
        sa.select(NotificationLog.id)
        .where(
            NotificationLog.status == NotificationStatus.QUEUED,
            sa.or_(NotificationLog.scheduled_for.is_(None), NotificationLog.scheduled_for <= now),
        )
        .order_by(NotificationLog.created_at, NotificationLog.id)
        .limit(limit)
    )
    return list(rows)
