"""Console pages: notification templates (editor with a live preview in both languages), the
send log, and USSD analytics.

Templates are saved and deleted through the same services as ``server/api/notifications.py``
(``save_template``, ``delete_template``), so the console refuses exactly what the API refuses;
the preview runs the same checks before anything is saved. A school's admin edits their
school's own wording; a platform admin edits the platform defaults every school inherits.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from aiohttp import web

from lms_domain.errors import InvalidInput
from lms_domain.i18n import Language
from lms_domain.messaging.analytics import ussd_analytics
from lms_domain.notifications import console as notes
from lms_domain.notifications.events import EVENTS, event_spec
from lms_domain.notifications.models import NotificationChannel, NotificationStatus
from lms_domain.notifications.schemas import TemplateIn, TemplateOut
from lms_domain.notifications.templates import delete_template, list_templates, save_template
from lms_domain.pagination import MAX_LIMIT
from server.admin.menu import ADMINS
from server.admin.views import NAIROBI, AdminRoutes, FormInvalid, Page, csv_response, every_page, safe_next

routes = AdminRoutes()

LANGUAGES = (Language.EN, Language.SW)
CSV_ROWS = 20_000  # a bigger export is a job for the database, not the console
CHANNEL_OPTIONS = [(c.value, c.value) for c in NotificationChannel]
LANGUAGE_OPTIONS = [("en", "English"), ("sw", "Kiswahili")]


TEMPLATE_CSV = [
    "id",
    "institution_id",
    "event",
    "channel",
    "language",
    "active",
    "subject",
    "body",
    "warnings",
    "updated",
]
LOG_CSV = [
    "id",
    "created",
    "institution_id",
    "learner",
    "event",
    "channel",
    "language",
    "recipient",
    "status",
    "attempts",
    "sent",
    "segments",
    "cost_minor",
    "subject",
    "body",
    "error",
]


def _template_csv_row(t: TemplateOut) -> list[Any]:
    return [
        t.id,
        t.institution_id,
        t.event,
        t.channel.value,
        t.language.value,
        t.is_active,
        t.subject,
        t.body,
        "; ".join(t.warnings),
        t.updated_at,
    ]


def _log_csv_row(r: notes.NotificationLogEntry) -> list[Any]:
    return [
        r.id,
        r.created_at,
        r.institution_id,
        r.learner_name,
        r.event,
        r.channel.value,
        r.language.value,
        r.recipient,
        r.status.value,
        r.attempts,
        r.sent_at,
        r.segments,
        r.cost_minor,
        r.subject,
        r.body,
        r.error,
    ]


def _event_options() -> list[tuple[str, str]]:
    return [(name, name) for name in EVENTS]


def _channel(text: str) -> NotificationChannel:
    try:
        return NotificationChannel(text or "sms")
    except ValueError:
        raise InvalidInput(f"{text!r} is not a channel", code="invalid_channel") from None


# Templates --------------------------------------------------------------------------------


@routes.get("/admin/notifications", roles=ADMINS)
async def list_notification_templates(page: Page) -> web.StreamResponse:
    event = page.q("event") or None
    if event is not None:
        event_spec(event)  # an unknown event is a clear 422, not an empty page
    channel = page.q("channel")
    language = page.q("language")
    async with page.read() as session:
        overview = await notes.template_overview(session=session, actor=page.actor, event=event)
        saved = await list_templates(session=session, actor=page.actor, event=event)
    if channel:
        overview = [row for row in overview if row.channel.value == channel]
        saved = [t for t in saved if t.channel.value == channel]
    if language:
        saved = [t for t in saved if t.language.value == language]
    if page.wants_csv:
        return csv_response(
            "notification-templates.csv",
            TEMPLATE_CSV,
            (_template_csv_row(t) for t in saved),
        )
    fields = [
        {"name": "event", "label": "Event", "options": _event_options()},
        {"name": "channel", "label": "Channel", "options": CHANNEL_OPTIONS},
        {"name": "language", "label": "Language", "options": LANGUAGE_OPTIONS},
    ]
    return await page.render(
        "admin/operations/templates.html", {"overview": overview, "saved": saved, "fields": fields}
    )


def _drafts(page: Page, channel: NotificationChannel) -> dict[Language, tuple[str | None, str]]:
    """The editor form's subject and body per language (subjects are for email only)."""
    drafts = {}
    for lang in LANGUAGES:
        subject = page.form.get(f"subject_{lang.value}", "").strip() if channel is NotificationChannel.EMAIL else ""
        drafts[lang] = (subject or None, page.form.get(f"body_{lang.value}", "").replace("\r\n", "\n").strip())
    return drafts


async def _editor(
    page: Page,
    event: str,
    channel: NotificationChannel,
    drafts: dict[Language, tuple[str | None, str]] | None = None,
    *,
    errors: list[str] | None = None,
    status: int = 200,
) -> web.Response:
    async with page.read() as session:
        texts = await notes.editor_texts(session=session, actor=page.actor, event=event, channel=channel)
    if drafts is None:
        drafts = {t.language: (t.subject, t.body) for t in texts}
    preview = notes.preview_template(event=event, channel=channel, texts=drafts)
    return await page.render(
        "admin/operations/editor.html",
        {
            "event": event_spec(event),
            "channel": channel,
            "texts": {t.language.value: t for t in texts},
            "drafts": {lang.value: draft for lang, draft in drafts.items()},
            "preview": preview,
            "errors": errors or [],
        },
        status=status,
    )


@routes.get("/admin/notifications/edit", roles=ADMINS)
async def edit_notification_template(page: Page) -> web.StreamResponse:
    return await _editor(page, page.q("event"), _channel(page.q("channel")))


@routes.post("/admin/notifications/preview", roles=ADMINS)
async def preview_notification_template(page: Page) -> web.StreamResponse:
    """The live preview's HTML fragment, for the editor's ``data-preview``."""
    channel = _channel(page.form.get("channel", ""))
    preview = notes.preview_template(event=page.form.get("event", ""), channel=channel, texts=_drafts(page, channel))
    return await page.render("admin/operations/preview.html", {"preview": preview})


@routes.post("/admin/notifications/edit", roles=ADMINS)
async def save_notification_template(page: Page) -> web.StreamResponse:
    """Save each language whose text differs from what applies today; both in one unit of
    work, so a refused language leaves the other unsaved too."""
    event = page.form.get("event", "")
    channel = _channel(page.form.get("channel", ""))
    drafts = _drafts(page, channel)
    saved = 0
    try:
        async with page.uow() as session:
            texts = await notes.editor_texts(session=session, actor=page.actor, event=event, channel=channel)
            for text in texts:
                subject, body = drafts[text.language]
                current = (text.inherited_subject, text.inherited_body)
                if text.own is not None:
                    current = (text.own.subject, text.own.body)
                if (subject, body) == current:
                    continue  # an untouched language keeps following the platform's text
                data = page.validate(
                    TemplateIn,
                    {
                        "event": event,
                        "channel": channel,
                        "language": text.language,
                        "subject": subject,
                        "body": body,
                        "institution_id": page.actor.institution_id,
                    },
                )
                after = await save_template(session=session, actor=page.actor, data=data, now=page.clock.now())
                await page.audit(
                    session,
                    action="notification_template.save",
                    target_type="notification_template",
                    target_id=after.id,
                    institution_id=after.institution_id,
                    before=text.own,
                    after=after,
                )
                saved += 1
    except InvalidInput as exc:
        return await _editor(page, event, channel, drafts, errors=[exc.detail], status=422)
    except FormInvalid as exc:
        errors = [f"{name}: {message}" for name, message in exc.errors.items()]
        return await _editor(page, event, channel, drafts, errors=errors, status=422)
    page.flash(page._("Saved.") if saved else page._("Nothing changed."))
    return await page.redirect(f"/admin/notifications/edit?event={event}&channel={channel.value}")


@routes.post("/admin/notifications/templates/{template_id}/delete", roles=ADMINS)
async def delete_notification_template(page: Page) -> web.StreamResponse:
    template_id = page.path_uuid("template_id")
    async with page.uow() as session:
        before = await notes.get_template(session=session, actor=page.actor, template_id=template_id)
        await delete_template(session=session, actor=page.actor, template_id=template_id)
        await page.audit(
            session,
            action="notification_template.delete",
            target_type="notification_template",
            target_id=template_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("Template deleted: the platform's or the built-in text applies again."))
    back = safe_next(str(page.form.get("back", "")), "/admin/notifications")
    return await page.redirect(back if back.startswith("/admin/notifications") else "/admin/notifications")


# The send log ------------------------------------------------------------------------------


def _log_query(page: Page, **extra: Any) -> notes.NotificationLogQuery:
    since, until = page.day_range()
    return page.validate(
        notes.NotificationLogQuery,
        {
            "channel": page.q("channel") or None,
            "status": page.q("status") or None,
            "event": page.q("event") or None,
            "recipient": page.q("phone") or None,
            "since": since,
            "until": until,
            "oldest_first": page.q("sort") == "created",
            "cursor": page.q("cursor") or None,
            **extra,
        },
    )


@routes.get("/admin/notifications/log", roles=ADMINS)
async def notification_log(page: Page) -> web.StreamResponse:
    if page.wants_csv:
        async with page.read() as session:

            async def fetch(cursor: str | None) -> tuple[list[notes.NotificationLogEntry], str | None]:
                query = _log_query(page, cursor=cursor, limit=MAX_LIMIT)
                return await notes.list_notification_log(session=session, actor=page.actor, query=query)

            rows = await every_page(fetch, max_rows=CSV_ROWS)
        return csv_response(
            "notification-log.csv",
            LOG_CSV,
            (_log_csv_row(r) for r in rows),
        )
    query = _log_query(page)
    async with page.read() as session:
        entries, next_cursor = await notes.list_notification_log(session=session, actor=page.actor, query=query)
    fields = [
        {"name": "phone", "label": "Learner phone or email", "placeholder": "0712 345 678"},
        {"name": "channel", "label": "Channel", "options": CHANNEL_OPTIONS},
        {"name": "status", "label": "Status", "options": [(s.value, s.value) for s in NotificationStatus]},
        {"name": "event", "label": "Event", "options": _event_options()},
    ]
    return await page.render(
        "admin/operations/log.html", {"entries": entries, "next_cursor": next_cursor, "fields": fields}
    )


# USSD analytics ----------------------------------------------------------------------------


def _day_range(page: Page) -> tuple[date | None, date | None]:
    since, until = page.day_range()
    return (
        since.date() if since is not None else None,
        (until - timedelta(days=1)).date() if until is not None else None,
    )


@routes.get("/admin/ussd", roles=ADMINS)
async def ussd_page(page: Page) -> web.StreamResponse:
    """Sessions per Nairobi day, completion and drop-off. Platform admins see every session; a
    school's admin only those dialled from their learners' phones
    (see ``lms_domain.messaging.analytics``)."""
    since, until = _day_range(page)
    today = page.clock.now().astimezone(NAIROBI).date()
    async with page.read() as session:
        figures = await ussd_analytics(session=session, actor=page.actor, since=since, until=until, today=today)
    if page.wants_csv:
        return csv_response(
            f"ussd-{figures.since}-{figures.until}.csv",
            ["day", "sessions", "completed", "incomplete", "failed", "completion_rate", "avg_duration_s", "avg_hops"],
            (
                [
                    d.day,
                    d.sessions,
                    d.completed,
                    d.incomplete,
                    d.failed,
                    "" if d.completion_rate is None else f"{d.completion_rate:.3f}",
                    d.avg_duration_s,
                    d.avg_hops,
                ]
                for d in figures.days
            ),
        )
    busiest = max((d.sessions for d in figures.days), default=0)
    return await page.render("admin/operations/ussd.html", {"u": figures, "busiest": busiest})
