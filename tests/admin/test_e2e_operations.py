"""In Chromium: a school's admin edits an SMS template, watches the preview follow in both
languages (warnings included), saves, and the database holds the school's new wording."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lms_domain.i18n import Language
from lms_domain.notifications.models import NotificationTemplate
from lms_domain.platform.models import AuditLog
from tests.admin.conftest import Console, sign_in


async def test_edit_a_template_with_live_preview(console: Console, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 360, "height": 800})
    await sign_in(page, console.base_url, console.a.admin)
    await page.goto(f"{console.base_url}/admin/notifications")
    await page.locator('tr[data-event="payment_received"][data-channel="sms"]').get_by_role("link", name="Edit").click()
    await page.wait_for_url("**/admin/notifications/edit?event=payment_received&channel=sms")

    english, swahili = page.locator("#preview-en"), page.locator("#preview-sw")
    await page.get_by_label("Text (English)").fill("Thanks {learner_name}! KES {amount} in, receipt {receipt}.")
    await english.get_by_text("Thanks Amina Wanjiru! KES 1,160 in, receipt SJK3L2M1PQ.").wait_for()
    await page.get_by_label("Text (Kiswahili)").fill("Asante {learner_name}! KES {amount} — risiti {receipt}.")
    await swahili.get_by_text("Asante Amina Wanjiru! KES 1,160 — risiti SJK3L2M1PQ.").wait_for()
    await swahili.get_by_text("characters outside GSM-7 (—) make it UCS-2").wait_for()
    assert await swahili.locator(".preview-cost").get_attribute("data-encoding") == "UCS-2"
    assert await english.locator(".preview-cost").get_attribute("data-encoding") == "GSM-7"

    # A typo in a variable shows at once, before saving.
    await page.get_by_label("Text (Kiswahili)").fill("Asante {learner_nam}! KES {amount}, risiti {receipt}.")
    await swahili.get_by_text("unknown variable(s) {learner_nam}").wait_for()
    await page.get_by_label("Text (Kiswahili)").fill("Asante {learner_name}! KES {amount}, risiti {receipt}.")
    await swahili.get_by_text("Asante Amina Wanjiru! KES 1,160, risiti SJK3L2M1PQ.").wait_for()

    await page.get_by_role("button", name="Save").click()
    await page.get_by_text("Saved.").wait_for()

    async with console.makers() as session:
        stored = {
            t.language: t
            for t in await session.scalars(
                sa.select(NotificationTemplate).where(NotificationTemplate.institution_id == console.a.institution.id)
            )
        }
        audits = list(await session.scalars(sa.select(AuditLog).where(AuditLog.action == "notification_template.save")))
    assert stored[Language.EN].body == "Thanks {learner_name}! KES {amount} in, receipt {receipt}."
    assert stored[Language.SW].body == "Asante {learner_name}! KES {amount}, risiti {receipt}."
    assert stored[Language.SW].variables == ["amount", "learner_name", "receipt"]
    assert len(audits) == 2 and {a.institution_id for a in audits} == {console.a.institution.id}
    # The editor now opens on the school's own texts.
    assert await page.locator('[data-source="own"]').count() == 2
    await page.close()
