"""End to end in Chromium: school A's admin approves a pending refund from the refunds page,
then the refund's status is checked in the database; and a payment found by phone opens its
timeline at laptop and phone widths (test_screenshots.py keeps the pictures)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from lms_domain.commerce.models import Refund, RefundStatus
from lms_domain.platform.models import AuditLog
from tests.admin.conftest import Console, sign_in
from tests.admin.test_money import seed_both


async def test_approve_a_pending_refund(console: Console, browser: Any) -> None:
    a, b = await seed_both(console)
    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "approve this refund?" confirmation
    await sign_in(page, console.base_url, console.a.admin)
    await page.get_by_role("link", name="Refunds").click()
    await page.get_by_label("Status").select_option("requested")
    await page.get_by_role("button", name="Search").click()
    row = page.locator(f'tr[data-refund="{a.refund_id}"]')
    assert await page.locator(f'tr[data-refund="{b.refund_id}"]').count() == 0
    await row.get_by_role("button", name="Approve").click()
    await page.get_by_text("Refund approved. Send it to return the money.").wait_for()
    async with console.makers() as session:
        refund = await session.get(Refund, a.refund_id)
        assert refund is not None and refund.status is RefundStatus.APPROVED
        assert refund.decided_at == console.clock.now()
        other = await session.get(Refund, b.refund_id)
        assert other is not None and other.status is RefundStatus.REQUESTED
        assert await session.scalar(sa.select(AuditLog.action).where(AuditLog.target_id == str(a.refund_id))) == (
            "refund.approve"
        )


async def test_find_a_payment_by_phone_and_open_its_timeline(console: Console, browser: Any) -> None:
    a, _ = await seed_both(console)
    for width, height in ((1280, 900), (360, 780)):
        page = await browser.new_page(viewport={"width": width, "height": height})
        await sign_in(page, console.base_url, console.a.admin)
        await page.goto(f"{console.base_url}/admin/payments?q=0712+345+670")
        await page.get_by_role("link", name=a.receipt).click()
        await page.locator("#timeline").wait_for()
        assert await page.locator('#timeline li[data-step="callback"]').count() == 2
        # Nothing wider than the screen: the tables scroll inside their own box.
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"page overflows {width}px by {overflow}px"
        await page.close()
