"""Console: the dashboard's figures, from the ledger and the school's own rows only."""

from __future__ import annotations

import re
from datetime import timedelta

from lms_domain.ids import new_id
from lms_domain.ledger.service import post_entry
from lms_domain.money import Money
from lms_domain.payments.intents import new_intent
from lms_domain.payments.models import IntentStatus, Provider
from lms_domain.platform.models import EdgeNode, EdgeNodeStatus
from lms_domain.subscriptions.models import SubscriptionStatus
from tests.admin.conftest import Console
from tests.factories import make_subscription


def _figure(html: str, name: str) -> str:
    found = re.search(rf'data-figure="{name}"><div class="value">([^<]*)<', html)
    assert found, name
    return found.group(1)


async def test_figures_come_from_the_ledger_and_the_schools_rows(console: Console) -> None:
    now = console.clock.now()
    a = console.a
    async with console.makers() as session, session.begin():
        for status in (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.GRACE):
            await make_subscription(session, learner=a.learner, due=now + timedelta(days=3), status=status)
        # KES 1,160 paid today (1,000 revenue + 160 VAT), KES 580 earlier this month, and a
        # KES 116 refund today: revenue today is 1,000 - 100 = 900, this month 900 + 500.
        for when, sale in ((now, 100_000), (now - timedelta(days=20), 50_000)):
            await post_entry(
                session,
                institution_id=a.institution.id,
                kind="settlement",
                source_type="payment",
                source_id=new_id(),
                occurred_at=when,
                description="sale",
                postings=[
                    ("mpesa_clearing", sale * 116 // 100),
                    ("revenue", -sale),
                    ("vat_payable", -sale * 16 // 100),
                ],
            )
        await post_entry(
            session,
            institution_id=a.institution.id,
            kind="refund",
            source_type="refund",
            source_id=new_id(),
            occurred_at=now,
            description="refund",
            postings=[("refunds", 10_000), ("vat_payable", 1_600), ("mpesa_clearing", -11_600)],
        )
        intent = await new_intent(
            session,
            learner=a.learner,
            amount=Money(11_600, "KES"),
            provider=Provider.MPESA,
            msisdn="254711000001",
            description="x",
            idempotency_key="dash-1",
            now=now,
        )
        intent.status, intent.resolved_at = IntentStatus.FAILED, now
        session.add(
            EdgeNode(
                institution_id=a.institution.id,
                name="Quiet lab",
                status=EdgeNodeStatus.ACTIVE,
                last_sync_at=now - timedelta(hours=30),
            )
        )
    admin = await console.as_user(a.admin)
    status, html = await admin.get("/admin")
    assert status == 200
    assert _figure(html, "learners") == "1"
    assert (_figure(html, "active"), _figure(html, "past_due"), _figure(html, "grace")) == ("1", "1", "1")
    # 2026-11-27 10:00 Nairobi: "this month" started on 1 November, 20 days earlier is in it.
    assert _figure(html, "revenue_today") == "KES 900.00"
    assert _figure(html, "revenue_month") == "KES 1,400.00"
    assert _figure(html, "failed_payments") == "1"
    assert "Quiet lab" in html

    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin")
    assert _figure(html, "learners") == "1"  # school B's own learner only
    assert _figure(html, "active") == "0" and _figure(html, "revenue_today") == "KES 0.00"
    assert _figure(html, "failed_payments") == "0" and "Quiet lab" not in html

    root = await console.as_user(console.root)
    status, html = await root.get("/admin")
    assert _figure(html, "learners") == "2" and _figure(html, "revenue_today") == "KES 900.00"
