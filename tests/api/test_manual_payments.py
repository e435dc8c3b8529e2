"""Renewals paid by hand (cash, a bank slip) recorded by an admin: the subscription renews once,
dunning stops, the money lands in the cash account, and retries never renew twice."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from lms_domain.ids import new_id
from lms_domain.notifications.models import NotificationLog
from lms_domain.payments.models import Payment
from lms_domain.subscriptions.models import RenewalOutcome, SubscriptionRenewalAttempt, SubscriptionStatus
from tests.api.conftest import School, World
from tests.conftest import T0
from tests.factories import make_subscription

V1 = "/api/v1"
PRICE = 30_000
DUE = T0 - timedelta(days=3)
RENEWED_TO = datetime.fromisoformat("2026-12-24T07:00:00+00:00")  # DUE plus one calendar month


async def past_due(world: World, school: School, status: SubscriptionStatus = SubscriptionStatus.PAST_DUE) -> str:
    """A monthly subscription three days overdue, with a dunning attempt still scheduled."""
    async with world.makers() as session, session.begin():
        subscription = await make_subscription(
            session, learner=school.learner, due=DUE, amount_minor=PRICE, status=status
        )
        session.add(
            SubscriptionRenewalAttempt(
                id=new_id(),
                institution_id=school.institution.id,
                subscription_id=subscription.id,
                period_start=DUE,
                attempt_no=1,
                outcome=RenewalOutcome.SCHEDULED,
                scheduled_for=T0 + timedelta(days=1),
            )
        )
    return str(subscription.id)


def path(subscription_id: str) -> str:
    return f"{V1}/subscriptions/{subscription_id}/manual-payments"


def slip(reference: str = "RB-0042", amount_minor: int = PRICE, **extra: Any) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "reference": reference, **extra}


async def payments(world: World) -> list[Payment]:
    async with world.makers() as session:
        return list(await session.scalars(sa.select(Payment)))


async def balances(world: World, school: School) -> dict[str, int]:
    status, body = await world.call("GET", V1 + "/ledger/balances", school.tokens["institution_admin"])
    assert status == 200, body
    assert body["total_minor"] == 0
    return {a["code"]: a["balance_minor"] for a in body["accounts"]}


async def subscription(world: World, school: School, subscription_id: str) -> dict[str, Any]:
    status, body = await world.call("GET", f"{V1}/subscriptions/{subscription_id}", school.tokens["institution_admin"])
    assert status == 200, body
    return dict(body)


async def test_a_manual_payment_renews_a_past_due_subscription(world: World) -> None:
    subscription_id = await past_due(world, world.a)
    assert (await balances(world, world.a))["cash"] == 0
    paid_at = (T0 - timedelta(hours=2)).isoformat()
    status, body = await world.call(
        "POST", path(subscription_id), world.a.tokens["institution_admin"], json=slip(paid_at=paid_at)
    )
    assert status == 201, body
    payment, renewed = body["payment"], body["subscription"]
    assert payment["provider"] == "manual" and payment["amount_minor"] == PRICE
    assert payment["account_reference"] == "RB-0042" and payment["learner_id"] == str(world.a.learner.id)
    assert datetime.fromisoformat(payment["paid_at"]) == T0 - timedelta(hours=2)
    assert renewed["id"] == subscription_id and renewed["status"] == "active"
    assert datetime.fromisoformat(renewed["current_period_start"]) == DUE  # paying late loses no days
    assert datetime.fromisoformat(renewed["current_period_end"]) == RENEWED_TO

    detail = await subscription(world, world.a, subscription_id)
    assert detail["status"] == "active" and detail["grace_until"] is None
    assert [a["outcome"] for a in detail["renewal_attempts"]] == ["skipped"]  # dunning stopped

    ledger = await balances(world, world.a)
    assert ledger["cash"] == PRICE and ledger["suspense"] == 0
    assert ledger["revenue"] + ledger["vat_payable"] == -PRICE
    assert (await balances(world, world.b))["cash"] == 0
    async with world.makers() as session:
        thanks = list(
            await session.scalars(sa.select(NotificationLog).where(NotificationLog.event == "payment_received"))
        )
    # One thank-you, to this learner, naming the slip (what they know the payment by).
    assert [(t.learner_id, "KES 300" in t.body, "RB-0042" in t.body) for t in thanks] == [
        (world.a.learner.id, True, True)
    ]


async def test_the_idempotency_key_replays_the_first_answer(world: World) -> None:
    subscription_id = await past_due(world, world.a)
    headers = {"Idempotency-Key": "bursar-slip-42"}
    admin = world.a.tokens["institution_admin"]
    first = await world.call("POST", path(subscription_id), admin, json=slip(), headers=headers)
    response = await world.client.post(path(subscription_id), json=slip(), headers={**headers, **world.auth(admin)})
    assert first[0] == response.status == 201
    assert response.headers["Idempotent-Replayed"] == "true" and await response.json() == first[1]
    status, problem = await world.call("POST", path(subscription_id), admin, json=slip("RB-0043"), headers=headers)
    assert status == 409 and problem["code"] == "idempotency_key_reused"
    assert len(await payments(world)) == 1
    detail = await subscription(world, world.a, subscription_id)
    assert datetime.fromisoformat(detail["current_period_end"]) == RENEWED_TO
    assert (await balances(world, world.a))["cash"] == PRICE


async def test_the_same_reference_twice_is_one_payment_and_one_renewal(world: World) -> None:
    subscription_id = await past_due(world, world.a)
    admin = world.a.tokens["institution_admin"]
    first = await world.call("POST", path(subscription_id), admin, json=slip())
    again = await world.call("POST", path(subscription_id), admin, json=slip(" RB-0042 "))
    assert first[0] == again[0] == 201
    assert again[1]["payment"]["id"] == first[1]["payment"]["id"]
    assert datetime.fromisoformat(again[1]["subscription"]["current_period_end"]) == RENEWED_TO
    assert len(await payments(world)) == 1 and (await balances(world, world.a))["cash"] == PRICE

    # The reference used with another amount is a conflict, not a second payment.
    status, problem = await world.call("POST", path(subscription_id), admin, json=slip(amount_minor=PRICE * 2))
    assert status == 409 and problem["code"] == "manual_reference_used"
    # A new slip is a new payment: it pays the next period.
    status, body = await world.call("POST", path(subscription_id), admin, json=slip("RB-0043"))
    assert status == 201 and body["payment"]["id"] != first[1]["payment"]["id"]
    assert datetime.fromisoformat(body["subscription"]["current_period_end"]) > RENEWED_TO
    assert (await balances(world, world.a))["cash"] == 2 * PRICE


async def test_a_wrong_payment_is_refused_and_changes_nothing(world: World) -> None:
    subscription_id = await past_due(world, world.a)
    admin = world.a.tokens["institution_admin"]
    refused: list[tuple[dict[str, Any], str]] = [
        (slip(amount_minor=PRICE - 100), "manual_amount_mismatch"),
        (slip(paid_at=(T0 + timedelta(hours=1)).isoformat()), "manual_paid_in_future"),
        (slip(amount_minor=0), "validation_error"),
        (slip(amount_minor=str(PRICE)), "validation_error"),
        (slip(reference="   "), "validation_error"),
        (slip(reference="R" * 56), "validation_error"),
        (slip(paid_at="2026-11-27T05:00:00"), "validation_error"),  # no offset: whose 05:00?
        ({"amount_minor": PRICE}, "validation_error"),
        (slip(currency="USD"), "validation_error"),
    ]
    for data, code in refused:
        status, problem = await world.call("POST", path(subscription_id), admin, json=data)
        assert status == 422 and problem["code"] == code, (data, problem)
    assert await payments(world) == []
    detail = await subscription(world, world.a, subscription_id)
    assert detail["status"] == "past_due" and datetime.fromisoformat(detail["current_period_end"]) == DUE
    assert (await balances(world, world.a))["cash"] == 0


@pytest.mark.parametrize("role", ["instructor", "learner"])
async def test_only_admins_record_manual_payments(world: World, role: str) -> None:
    subscription_id = await past_due(world, world.a)
    status, problem = await world.call("POST", path(subscription_id), world.a.tokens[role], json=slip())
    assert status == 403 and problem["code"] == "permission_denied"
    assert await payments(world) == []


async def test_another_schools_subscription_is_not_found(world: World) -> None:
    subscription_id = await past_due(world, world.a)
    status, problem = await world.call("POST", path(subscription_id), world.b.tokens["institution_admin"], json=slip())
    assert status == 404 and problem["code"] == "not_found"
    for missing in (str(uuid.uuid4()), "not-a-uuid"):
        assert (await world.call("POST", path(missing), world.a.tokens["institution_admin"], json=slip()))[0] == 404
    assert await payments(world) == []
    status, body = await world.call("POST", path(subscription_id), world.platform_token, json=slip())
    assert status == 201 and body["payment"]["institution_id"] == str(world.a.institution.id)


async def test_a_cancelled_subscription_is_not_renewed(world: World) -> None:
    subscription_id = await past_due(world, world.a, SubscriptionStatus.CANCELLED)
    status, problem = await world.call("POST", path(subscription_id), world.a.tokens["institution_admin"], json=slip())
    assert status == 409 and problem["code"] == "subscription_not_renewable"
    assert await payments(world) == []


async def test_two_schools_may_use_the_same_slip_number(world: World) -> None:
    a_id, b_id = await past_due(world, world.a), await past_due(world, world.b)
    assert (await world.call("POST", path(a_id), world.a.tokens["institution_admin"], json=slip()))[0] == 201
    status, body = await world.call("POST", path(b_id), world.b.tokens["institution_admin"], json=slip())
    assert status == 201, body
