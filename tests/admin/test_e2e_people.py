"""End to end in Chromium: sign in, find a learner by phone, reset a PIN, register and revoke
an edge node; each checked in the database, not only on the page."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from lms_domain.platform.edge_nodes import code_hash, normalise_code
from lms_domain.platform.models import AuditLog, EdgeNode, EdgeNodeStatus
from lms_domain.tenancy.models import Learner
from tests.admin.conftest import Console, sign_in
from tests.factories import FAST_HASHER


async def test_find_a_learner_by_phone_and_reset_the_pin(console: Console, browser: Any) -> None:
    page = await browser.new_page()
    await sign_in(page, console.base_url, console.a.admin)
    await page.get_by_role("link", name="Learners").click()
    await page.get_by_label("Phone or name").fill("+254 711 000 001")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name="Learner Alpha School").click()
    await page.get_by_label("New PIN (4 digits)").fill("8642")
    await page.get_by_label("The new PIN again").fill("8642")
    await page.get_by_role("button", name="Reset PIN").click()
    await page.get_by_text("The new PIN is set.").wait_for()
    async with console.makers() as session:
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None and FAST_HASHER.verify(learner.pin_hash or "", "8642")
        assert await session.scalar(sa.select(AuditLog.action).where(AuditLog.target_id == str(learner.id))) == (
            "learner.pin_reset"
        )


async def test_register_and_revoke_an_edge_node(console: Console, browser: Any) -> None:
    page = await browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the "revoke for good?" confirmation
    await sign_in(page, console.base_url, console.a.admin)
    await page.goto(f"{console.base_url}/admin/edge-nodes")
    await page.get_by_label("Name of the new node").fill("Staff room server")
    await page.get_by_role("button", name="Register").click()
    code = (await page.locator("#enrollment-code").text_content() or "").strip()
    assert re.fullmatch(r"[0-9A-Z-]{16,24}", code), code
    async with console.makers() as session:
        node = await session.scalar(sa.select(EdgeNode).where(EdgeNode.name == "Staff room server"))
        assert node is not None and node.institution_id == console.a.institution.id
        assert node.enrollment_code_hash == code_hash(normalise_code(code))
    await page.get_by_role("link", name="Open the node").click()
    await page.get_by_role("button", name="Revoke").click()
    await page.get_by_text("The edge node is revoked").wait_for()
    assert (await page.locator("#node-status").text_content() or "").strip() == "revoked"
    async with console.makers() as session:
        revoked = await session.get(EdgeNode, node.id)
        assert revoked is not None and revoked.status is EdgeNodeStatus.REVOKED


async def test_the_console_fits_a_360px_phone_and_works_from_the_keyboard(console: Console, browser: Any) -> None:
    page = await browser.new_page(viewport={"width": 360, "height": 740})
    page.set_default_timeout(10_000)
    await page.goto(f"{console.base_url}/admin/login")
    # Keyboard only: the username field has focus, Tab moves to the password, Enter submits.
    await page.wait_for_function("document.activeElement && document.activeElement.id === 'login'")
    await page.keyboard.type(console.a.admin)
    await page.keyboard.press("Tab")
    await page.keyboard.type("correct-horse-battery")
    await page.keyboard.press("Enter")
    await page.wait_for_url(f"{console.base_url}/admin")
    for path in ("/admin", "/admin/learners", "/admin/edge-nodes"):
        await page.goto(console.base_url + path)
        overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at 360px"


async def test_the_language_switch_shows_kiswahili(console: Console, browser: Any) -> None:
    page = await browser.new_page()
    await sign_in(page, console.base_url, console.a.admin)
    await page.get_by_label("Language").select_option("sw")
    await page.get_by_role("heading", name="Dashibodi").wait_for()
    assert await page.get_by_role("link", name="Wanafunzi").count() == 1
