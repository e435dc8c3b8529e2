"""The console's notification pages (templates, editor with live preview, send log) and USSD
analytics: what is saved and audited, what is refused, and that one school sees nothing of another's."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from lms_domain.access import Actor
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.messaging.models import UssdSessionEvent
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationStatus,
    NotificationTemplate,
)
from lms_domain.notifications.schemas import TemplateIn
from lms_domain.notifications.service import log_row, queue_notification
from lms_domain.notifications.templates import save_template
from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import Role
from tests.admin.conftest import Console, School
from tests.conftest import T0

EDIT = "/admin/notifications/edit"
PREVIEW = "/admin/notifications/preview"
PAYMENT_EN = "Thank you {learner_name}. We received KES {amount}, receipt {receipt}."
PAYMENT_SW = "Asante {learner_name}. Tumepokea KES {amount}, risiti {receipt}."


def sms_form(body_en: str, body_sw: str) -> dict[str, str]:
    return {"event": "payment_received", "channel": "sms", "body_en": body_en, "body_sw": body_sw}


def admin_of(school: School) -> Actor:
    return Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=school.institution.id)


async def school_template(console: Console, school: School, body: str, language: Language = Language.EN) -> uuid.UUID:
    async with console.makers() as session, session.begin():
        saved = await save_template(
            session=session,
            actor=admin_of(school),
            data=TemplateIn(event="payment_received", channel=NotificationChannel.SMS, language=language, body=body),
            now=T0,
        )
    return saved.id


async def templates_in_db(console: Console) -> list[NotificationTemplate]:
    async with console.makers() as session:
        return list(await session.scalars(sa.select(NotificationTemplate).order_by(NotificationTemplate.language)))


async def audit_entries(console: Console) -> list[AuditLog]:
    async with console.makers() as session:
        return list(
            await session.scalars(
                sa.select(AuditLog).where(AuditLog.target_type == "notification_template").order_by(AuditLog.id)
            )
        )


def rows_of(body: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))


async def get_csv(client: Any, path: str) -> list[list[str]]:
    response = await client.get_response(path)
    assert response.status == 200, await response.text()
    assert response.content_type == "text/csv"
    return rows_of(await response.text())


# Templates ---------------------------------------------------------------------------------


async def test_templates_page_shows_each_school_only_its_own(console: Console) -> None:
    await school_template(console, console.a, "Alpha says thanks {learner_name}, KES {amount}.")
    a = await console.as_user(console.a.admin)
    b = await console.as_user(console.b.admin)
    status, html = await a.get("/admin/notifications")
    assert status == 200
    assert "Alpha says thanks" in html and 'data-event="payment_received" data-channel="sms"' in html
    status, html = await b.get("/admin/notifications")
    assert status == 200 and "Alpha says thanks" not in html
    assert PAYMENT_EN in html  # school B still sees the built-in text
    assert not any("Alpha" in cell for row in await get_csv(b, "/admin/notifications?format=csv") for cell in row)
    a_rows = await get_csv(a, "/admin/notifications?format=csv")
    assert [r[2] for r in a_rows[1:]] == ["payment_received"]
    root = await console.as_user(console.root)
    _, html = await root.get("/admin/notifications")
    assert "Alpha says thanks" in html  # the platform sees every school's own wording
    # B's editor opens on the built-in text, and B cannot delete A's template.
    _, html = await b.get(f"{EDIT}?event=payment_received&channel=sms")
    assert "Alpha says thanks" not in html and 'data-source="own"' not in html
    template_id = (await templates_in_db(console))[0].id
    response = await b.post(f"/admin/notifications/templates/{template_id}/delete")
    assert response.status == 404
    assert len(await templates_in_db(console)) == 1


async def test_instructors_cannot_open_the_notification_pages(console: Console) -> None:
    client = await console.as_user(console.a.instructor)
    for path in ("/admin/notifications", "/admin/notifications/log", "/admin/ussd", f"{EDIT}?event=payment_received"):
        status, _ = await client.get(path)
        assert status == 403, path


async def test_preview_renders_both_languages_with_sample_values(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post(
        PREVIEW,
        sms_form("Hi {learner_name}", "Habari {learner_name}"),
    )
    assert response.status == 200
    html = await response.text()
    assert 'id="preview-en"' in html and 'id="preview-sw"' in html
    assert "Hi Amina Wanjiru" in html and "Habari Amina Wanjiru" in html
    assert 'data-parts="1" data-encoding="GSM-7"' in html
    assert "preview-warning" not in html and "data-error" not in html


async def test_preview_warns_about_ucs2_and_segments(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    long_text = "Habari {learner_name}. " + "Somo ni bora sana kwa kusoma kila siku. " * 10
    response = await client.post(
        PREVIEW,
        {"event": "payment_received", "channel": "sms", "body_en": "We’ve got KES {amount}", "body_sw": long_text},
    )
    html = await response.text()
    assert response.status == 200
    english = html.split('id="preview-sw"')[0]
    swahili = html.split('id="preview-sw"')[1]
    assert "characters outside GSM-7 (’) make it UCS-2: 70 characters a segment" in english
    assert 'data-encoding="UCS-2"' in english
    assert "3 SMS segments before the variables are filled in" in swahili
    assert 'data-parts="3" data-encoding="GSM-7"' in swahili
    assert await templates_in_db(console) == []  # a preview saves nothing


async def test_preview_refuses_unknown_variables(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post(
        PREVIEW, {"event": "payment_received", "channel": "sms", "body_en": "Hi {nmae}", "body_sw": "Habari {"}
    )
    html = await response.text()
    assert "unknown variable(s) {nmae} for payment_received" in html
    assert "braces do not match" in html


async def test_editor_opens_with_the_texts_in_use(console: Console) -> None:
    await school_template(console, console.a, "Own Swahili {learner_name}", Language.SW)
    client = await console.as_user(console.a.admin)
    status, html = await client.get(f"{EDIT}?event=payment_received&channel=sms")
    assert status == 200
    assert PAYMENT_EN in html and "Own Swahili {learner_name}" in html
    assert 'data-source="built_in"' in html and 'data-source="own"' in html
    assert "Own Swahili Amina Wanjiru" in html  # the preview is there before any typing
    status, _ = await client.get(f"{EDIT}?event=quiz_result&channel=sms")
    assert status == 422  # quiz results go by email only
    status, _ = await client.get(f"{EDIT}?event=no_such_event")
    assert status == 422


async def test_saving_writes_only_the_changed_language_and_audits_it(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    form = sms_form("Asante sana {learner_name}!", PAYMENT_SW)
    response = await client.post(EDIT, form)
    assert response.status == 303, await response.text()
    stored = await templates_in_db(console)
    assert [(t.institution_id, t.language, t.body, t.variables) for t in stored] == [
        (console.a.institution.id, Language.EN, "Asante sana {learner_name}!", ["learner_name"])
    ]
    (entry,) = await audit_entries(console)
    assert entry.action == "notification_template.save" and entry.target_id == str(stored[0].id)
    assert entry.institution_id == console.a.institution.id
    assert entry.before is None and entry.after is not None and entry.after["body"] == "Asante sana {learner_name}!"
    # Saving again records the before and after.
    response = await client.post(EDIT, {**form, "body_en": "Asante {learner_name}, KES {amount}."})
    assert response.status == 303
    entries = await audit_entries(console)
    assert len(entries) == 2
    assert entries[1].before is not None and entries[1].before["body"] == "Asante sana {learner_name}!"
    assert entries[1].after is not None and entries[1].after["body"] == "Asante {learner_name}, KES {amount}."
    # Nothing changed: nothing written.
    response = await client.post(EDIT, {**form, "body_en": "Asante {learner_name}, KES {amount}."})
    assert response.status == 303
    assert len(await audit_entries(console)) == 2
    _, html = await client.get(f"{EDIT}?event=payment_received&channel=sms")
    assert "Nothing changed." in html


async def test_an_unknown_variable_is_refused_and_nothing_is_written(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post(
        EDIT,
        sms_form("Hi {learner_name}, {balance} left", "Sawa"),
    )
    assert response.status == 422
    html = await response.text()
    assert "unknown variable(s) {balance} for payment_received" in html
    assert "Hi {learner_name}, {balance} left" in html  # the draft is kept for fixing
    assert await templates_in_db(console) == []  # not even the valid Swahili
    assert await audit_entries(console) == []
    # An empty text is refused too.
    response = await client.post(
        EDIT, {"event": "payment_received", "channel": "sms", "body_en": "  ", "body_sw": PAYMENT_SW}
    )
    assert response.status == 422
    assert await templates_in_db(console) == []


async def test_email_templates_keep_their_subject(console: Console) -> None:
    client = await console.as_user(console.a.admin)
    response = await client.post(
        EDIT,
        {
            "event": "quiz_result",
            "channel": "email",
            "subject_en": "{quiz_title}: your score",
            "body_en": "{learner_name}, {score}/{max_score}.",
            "subject_sw": "Matokeo ya jaribio",
            "body_sw": "{learner_name}, umepata {score}/{max_score} katika {quiz_title}.",
        },
    )
    assert response.status == 303, await response.text()
    (stored,) = await templates_in_db(console)
    assert (stored.channel, stored.subject, stored.body) == (
        NotificationChannel.EMAIL,
        "{quiz_title}: your score",
        "{learner_name}, {score}/{max_score}.",
    )


async def test_deleting_a_template_goes_back_to_the_inherited_text_and_is_audited(console: Console) -> None:
    template_id = await school_template(console, console.a, "Alpha thanks {learner_name}")
    client = await console.as_user(console.a.admin)
    response = await client.post(f"/admin/notifications/templates/{template_id}/delete")
    assert response.status == 303
    assert await templates_in_db(console) == []
    (entry,) = await audit_entries(console)
    assert entry.action == "notification_template.delete" and entry.target_id == str(template_id)
    assert entry.before is not None and entry.before["body"] == "Alpha thanks {learner_name}" and entry.after is None
    response = await client.post(f"/admin/notifications/templates/{template_id}/delete")
    assert response.status == 404


async def test_a_school_admin_cannot_delete_the_platform_default(console: Console) -> None:
    root = await console.as_user(console.root)
    response = await root.post(EDIT, sms_form("Platform {learner_name}", PAYMENT_SW))
    assert response.status == 303
    (stored,) = await templates_in_db(console)
    assert stored.institution_id is None
    client = await console.as_user(console.a.admin)
    _, html = await client.get(f"{EDIT}?event=payment_received&channel=sms")
    assert 'data-source="platform"' in html  # what school A inherits
    response = await client.post(f"/admin/notifications/templates/{stored.id}/delete")
    assert response.status == 404
    assert len(await templates_in_db(console)) == 1


# The send log ------------------------------------------------------------------------------


async def add_log(
    console: Console,
    school: School,
    *,
    n: int = 1,
    event: str = "payment_received",
    channel: NotificationChannel = NotificationChannel.SMS,
    status: NotificationStatus = NotificationStatus.SENT,
    recipient: str | None = None,
    at: datetime = T0,
    body: str = "Asante",
) -> None:
    async with console.makers() as session, session.begin():
        for i in range(n):
            row = log_row(
                channel=channel,
                recipient=recipient or ("+254711000001" if school is console.a else "+254711000002"),
                body=f"{body} {i}",
                event=event,
                language=Language.EN,
                dedupe_key=f"test:{uuid.uuid4()}",
                now=at,
                learner_id=school.learner.id,
                institution_id=school.institution.id,
                status=status,
            )
            await queue_notification(session, row)


async def test_send_log_filters_and_tenancy(console: Console) -> None:
    await add_log(console, console.a, body="Alpha sent")
    await add_log(console, console.a, status=NotificationStatus.FAILED, body="Alpha failed")
    await add_log(
        console,
        console.a,
        channel=NotificationChannel.EMAIL,
        event="quiz_result",
        recipient="Parent@example.com",
        body="Alpha email",
    )
    await add_log(console, console.a, at=T0 - timedelta(days=3), body="Alpha old")
    await add_log(console, console.b, body="Beta sent")
    a = await console.as_user(console.a.admin)
    b = await console.as_user(console.b.admin)

    _, html = await a.get("/admin/notifications/log")
    assert all(f"Alpha {w} 0" in html for w in ("sent", "failed", "email", "old")) and "Beta" not in html
    assert "Learner Alpha School" in html
    _, html = await b.get("/admin/notifications/log")
    assert "Beta sent 0" in html and "Alpha" not in html

    _, html = await a.get("/admin/notifications/log?status=failed")
    assert "Alpha failed 0" in html and "Alpha sent 0" not in html
    _, html = await a.get("/admin/notifications/log?channel=email")
    assert "Alpha email 0" in html and "Alpha sent 0" not in html
    _, html = await a.get("/admin/notifications/log?event=quiz_result")
    assert "Alpha email 0" in html and "Alpha failed 0" not in html
    _, html = await a.get("/admin/notifications/log?phone=0711+000+001")
    assert "Alpha sent 0" in html and "Alpha email 0" in html  # the learner's email too
    _, html = await a.get("/admin/notifications/log?phone=parent@example.com")
    assert "Alpha email 0" in html and "Alpha sent 0" not in html
    _, html = await b.get("/admin/notifications/log?phone=0711000001")
    assert "Alpha" not in html  # another school's learner's phone finds nothing
    status, _ = await a.get("/admin/notifications/log?phone=not-a-phone")
    assert status == 422
    _, html = await a.get("/admin/notifications/log?from=2026-11-27&to=2026-11-27")
    assert "Alpha sent 0" in html and "Alpha old 0" not in html
    _, html = await a.get("/admin/notifications/log?to=2026-11-25")
    assert "Alpha old 0" in html and "Alpha sent 0" not in html

    rows = await get_csv(a, "/admin/notifications/log?format=csv")
    assert rows[0][:5] == ["id", "created", "institution_id", "learner", "event"]
    assert sorted(r[14] for r in rows[1:]) == ["Alpha email 0", "Alpha failed 0", "Alpha old 0", "Alpha sent 0"]
    assert {r[2] for r in rows[1:]} == {str(console.a.institution.id)}
    rows = await get_csv(b, "/admin/notifications/log?format=csv")
    assert [r[14] for r in rows[1:]] == ["Beta sent 0"]
    root = await console.as_user(console.root)
    rows = await get_csv(root, "/admin/notifications/log?format=csv")
    assert len(rows) == 6


async def test_send_log_pages_newest_first_or_oldest_first(console: Console) -> None:
    await add_log(console, console.a, n=55, body="Alpha")
    await add_log(console, console.b, n=3, body="Beta")
    client = await console.as_user(console.a.admin)
    _, first = await client.get("/admin/notifications/log")
    assert first.count("data-entry=") == 50 and "Alpha 54<" in first and "Alpha 4<" not in first
    assert 'rel="next"' in first
    next_url = first.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    _, second = await client.get(next_url)
    assert second.count("data-entry=") == 5 and "Alpha 4<" in second and "Alpha 0<" in second
    assert 'rel="next"' not in second and "Beta" not in second
    _, oldest = await client.get("/admin/notifications/log?sort=created")
    assert oldest.index("Alpha 0<") < oldest.index("Alpha 1<")
    rows = await get_csv(client, "/admin/notifications/log?format=csv")
    assert len(rows) == 56  # the export is not cut at one page


# USSD analytics -------------------------------------------------------------------------------


async def add_session(
    console: Console,
    phone: str,
    status: str,
    at: datetime,
    *,
    screen: str | None = None,
    duration_ms: int | None = 20_000,
    hops: int | None = 4,
) -> None:
    async with console.makers() as session, session.begin():
        session.add(
            UssdSessionEvent(
                id=new_id(),
                session_id=f"ATUid_{uuid.uuid4().hex}",
                service_code="*384*123#",
                phone=phone,
                status=status,
                duration_ms=duration_ms,
                hops=hops,
                last_screen=screen,
                received_at=at,
            )
        )


A_PHONE, B_PHONE, STRANGER = "+254711000001", "+254711000002", "+254722999999"


async def ussd_world(console: Console) -> None:
    day = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)  # 12:00 in Nairobi on 26 November
    await add_session(console, A_PHONE, "Success", day, duration_ms=30_000, hops=6)
    await add_session(console, A_PHONE, "Incomplete", day, screen="pay.confirm", duration_ms=10_000, hops=2)
    await add_session(console, A_PHONE, "Failed", day, screen="pay.confirm", duration_ms=None, hops=None)
    # 22:30 UTC on the 26th is 01:30 on the 27th in Nairobi.
    await add_session(console, A_PHONE, "Incomplete", datetime(2026, 11, 26, 22, 30, tzinfo=UTC), screen="menu")
    await add_session(console, B_PHONE, "Success", day)
    await add_session(console, B_PHONE, "Incomplete", day, screen="beta.screen")
    await add_session(console, STRANGER, "Incomplete", day, screen="register")


async def test_ussd_analytics_for_a_school_counts_its_learners_phones(console: Console) -> None:
    await ussd_world(console)
    client = await console.as_user(console.a.admin)
    status, html = await client.get("/admin/ussd")
    assert status == 200
    assert 'data-figure="sessions"><div class="value">4<' in html
    assert 'data-figure="completion"><div class="value">25%<' in html
    assert 'data-day="2026-11-26"' in html and 'data-day="2026-10-29"' in html  # 30 days to today
    assert "beta.screen" not in html and "register" not in html
    assert 'data-screen="pay.confirm"><td>pay.confirm</td><td class="num">2</td><td class="num">67%' in html
    rows = await get_csv(client, "/admin/ussd?from=2026-11-25&to=2026-11-27&format=csv")
    assert rows == [
        ["day", "sessions", "completed", "incomplete", "failed", "completion_rate", "avg_duration_s", "avg_hops"],
        ["2026-11-25", "0", "0", "0", "0", "", "", ""],
        ["2026-11-26", "3", "1", "1", "1", "0.333", "20.0", "4.0"],
        ["2026-11-27", "1", "0", "1", "0", "0.000", "20.0", "4.0"],  # a Nairobi day, not a UTC one
    ]


async def test_ussd_analytics_tenancy_and_platform_view(console: Console) -> None:
    await ussd_world(console)
    b = await console.as_user(console.b.admin)
    _, html = await b.get("/admin/ussd?from=2026-11-26&to=2026-11-26")
    assert 'data-figure="sessions"><div class="value">2<' in html
    assert "pay.confirm" not in html and "beta.screen" in html
    rows = await get_csv(b, "/admin/ussd?from=2026-11-26&to=2026-11-27&format=csv")
    assert [r[1] for r in rows[1:]] == ["2", "0"]
    root = await console.as_user(console.root)
    rows = await get_csv(root, "/admin/ussd?from=2026-11-26&to=2026-11-27&format=csv")
    assert [r[1] for r in rows[1:]] == ["6", "1"]  # strangers' sessions count for the platform
    _, html = await root.get("/admin/ussd?from=2026-11-26&to=2026-11-27")
    assert "register" in html
    status, _ = await root.get("/admin/ussd?from=2026-11-27&to=2026-11-01")
    assert status == 422
    status, _ = await root.get("/admin/ussd?from=2020-01-01&to=2026-11-01")
    assert status == 422
