"""Screenshots of the dashboard and an intent's payment timeline at 1280 px and 360 px, saved
under docs/screenshots/ (the README and docs/ADMIN.md show them). They are taken on every run,
so they show the console as it is; each is also checked not to scroll sideways."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.admin.conftest import Console, sign_in
from tests.admin.test_money import seed

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = (1280, 360)


@pytest.mark.backend_only("sqlite")  # one set of pictures is enough
async def test_dashboard_and_payment_timeline_screenshots(console: Console, browser: Any) -> None:
    money = await seed(console, console.a, "SHOT", "600300")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page = await browser.new_page(viewport={"width": width, "height": 900})
        await sign_in(page, console.base_url, console.a.admin)
        for name, path in (
            ("dashboard", "/admin"),
            ("payment-timeline", f"/admin/payments/intents/{money.intent_id}"),
        ):
            await page.goto(console.base_url + path)
            await page.get_by_role("heading", level=1).first.wait_for()
            overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
            target = SHOTS / f"{name}-{width}.png"
            await page.screenshot(path=str(target), full_page=True)
            assert target.stat().st_size > 5_000  # a real picture, not a blank page
        await page.close()
