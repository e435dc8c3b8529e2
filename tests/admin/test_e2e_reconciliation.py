"""End to end in Chromium: a school admin works through the reconciliation exceptions queue and
resolves an exception with a note; checked in the database, not only on the page."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lms_domain.payments.exceptions import ExceptionStatus, ReconciliationException, Resolution, record_run
from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import User
from tests.admin.conftest import Console, sign_in
from tests.payments.test_reconciliation_queue import amount_mismatch, make_payment, report_of


async def test_resolve_a_reconciliation_exception(console: Console, browser: Any) -> None:
    async with console.makers() as session, session.begin():
        payment = await make_payment(session, console.a.institution, "SKRE2E0001", 30_000)
        other = await make_payment(session, console.b.institution, "SKRE2E0002", 30_000)
        await record_run(
            session=session,
            report=report_of(amount_mismatch(payment, 29_000), amount_mismatch(other, 31_000)),
            now=console.clock.now(),
        )

    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # "Resolve this exception?"
    await sign_in(page, console.base_url, console.a.admin)
    await page.get_by_role("link", name="Reconciliation").click()
    await page.get_by_role("link", name="Work through the open exceptions").click()
    assert await page.get_by_text("SKRE2E0002").count() == 0  # school B's stays out of sight
    await page.get_by_role("link", name="SKRE2E0001").click()
    await page.get_by_label("Resolution").select_option("written_off")
    await page.get_by_label("Note").fill("KES 10 short: the learner's bank charge, agreed in writing")
    await page.get_by_role("button", name="Resolve").click()
    await page.get_by_text("The exception is resolved.").wait_for()
    assert "Written off" in (await page.locator("#status").text_content() or "")

    async with console.makers() as session:
        row = await session.scalar(
            sa.select(ReconciliationException).where(ReconciliationException.receipt == "SKRE2E0001")
        )
        admin_id = await session.scalar(sa.select(User.id).where(User.username == console.a.admin))
        assert row is not None and row.status is ExceptionStatus.RESOLVED
        assert row.resolution is Resolution.WRITTEN_OFF and row.resolved_by_id == admin_id
        assert row.note == "KES 10 short: the learner's bank charge, agreed in writing"
        entry = await session.scalar(sa.select(AuditLog).where(AuditLog.target_id == str(row.id)))
        assert entry is not None and entry.action == "reconciliation.exception.resolve"
        assert entry.actor_user_id == admin_id and entry.institution_id == console.a.institution.id
        untouched = await session.scalar(
            sa.select(ReconciliationException).where(ReconciliationException.receipt == "SKRE2E0002")
        )
        assert untouched is not None and untouched.status is ExceptionStatus.OPEN
