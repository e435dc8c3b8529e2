"""Commerce over HTTP: selling, checkout, invoices, receipts, refunds, subscriptions, tenancy."""

from __future__ import annotations

import asyncio
import io
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pypdf import PdfReader

from lms_domain.commerce.models import Order, Receipt
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.payments.models import Payment, Provider
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionItem,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Learner, Role
from lms_domain.tenancy.service import create_learner, create_user
from tests.api.conftest import PASSWORD, School, World, login
from tests.conftest import T0
from tests.factories import FAST_HASHER, make_course

V1 = "/api/v1"
ROLES = ("institution_admin", "instructor", "learner")


async def ok(world: World, method: str, path: str, token: str, expected: int = 200, **kw: Any) -> Any:
    status, body = await world.call(method, V1 + path, token, **kw)
    assert status == expected, body
    return body


async def sell(
    world: World, school: School, *, shillings: int = 300, interval: str = "month", sku: str = "SOMO-PREMIUM"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A subscription product of ``school`` with one price, created by its admin."""
    admin = school.tokens["institution_admin"]
    product = await ok(
        world,
        "POST",
        "/products",
        admin,
        201,
        json={"sku": sku, "kind": "subscription", "name_en": "Somo Premium", "name_sw": "Somo Premium kwa mwezi"},
    )
    price = await ok(
        world,
        "POST",
        f"/products/{product['id']}/prices",
        admin,
        201,
        json={"amount_minor": shillings * 100, "interval": interval},
    )
    return product, price


def cart(*price_ids: str, coupon: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"items": [{"price_id": p, "quantity": 1} for p in price_ids], **extra}
    if coupon is not None:
        body["coupon_code"] = coupon
    return body


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


async def download(world: World, path: str, token: str) -> bytes:
    response = await world.client.get(V1 + path, headers=world.auth(token))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/pdf"
    data = await response.read()
    assert data.startswith(b"%PDF")
    return data


async def pay_directly(world: World, school: School, order: dict[str, Any], receipt_code: str) -> tuple[str, str]:
    """What the payments issue will do on an M-Pesa callback: a settled payment and its receipt."""
    async with world.makers() as session, session.begin():
        payment = Payment(
            id=new_id(),
            institution_id=school.institution.id,
            learner_id=school.learner.id,
            provider=Provider.MPESA,
            provider_receipt=receipt_code,
            amount_minor=order["total_minor"],
            msisdn="254711000001",
            paid_at=T0 + timedelta(minutes=5),
        )
        session.add(payment)
        await session.flush()
        receipt = Receipt(
            id=new_id(),
            institution_id=school.institution.id,
            invoice_id=uuid.UUID(order["invoice"]["id"]),
            payment_id=payment.id,
            number="RCT-000001",
            amount_minor=order["total_minor"],
            issued_at=T0 + timedelta(minutes=5),
        )
        session.add(receipt)
    return str(payment.id), str(receipt.id)


async def count_orders(world: World) -> int:
    async with world.makers() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(Order)) or 0)


# Checkout -------------------------------------------------------------------------------


async def test_learner_checks_out_the_monthly_price_and_downloads_the_invoice(world: World) -> None:
    _, monthly = await sell(world, world.a)
    learner = world.a.tokens["learner"]
    quote = await ok(world, "POST", "/cart", learner, json=cart(monthly["id"]))
    assert (quote["subtotal_minor"], quote["discount_minor"], quote["total_minor"]) == (30_000, 0, 30_000)
    assert (quote["vat_minor"], quote["net_minor"], quote["vat_rate_bp"]) == (4_138, 25_862, 1600)
    assert quote["lines"][0]["product_name"] == "Somo Premium" and quote["lines"][0]["total_minor"] == 30_000

    order = await ok(world, "POST", "/orders", learner, 201, json=cart(monthly["id"]))
    assert order["status"] == "pending" and order["total_minor"] == 30_000
    assert order["learner_id"] == str(world.a.learner.id)
    assert [(i["price_id"], i["quantity"], i["total_minor"]) for i in order["line_items"]] == [
        (monthly["id"], 1, 30_000)
    ]
    invoice = order["invoice"]
    assert invoice["number"] == "INV-000001" and invoice["status"] == "open" and invoice["language"] == "en"
    assert (invoice["total_minor"], invoice["vat_minor"], invoice["net_minor"]) == (30_000, 4_138, 25_862)

    text = pdf_text(await download(world, f"/invoices/{invoice['id']}/pdf", learner))
    assert "INV-000001" in text and "KES 300.00" in text and "KES 41.38" in text and "KES 258.62" in text
    assert "Learner Alpha School" in text

    second = await ok(world, "POST", "/orders", learner, 201, json=cart(monthly["id"]))
    assert second["invoice"]["number"] == "INV-000002"
    page = await ok(world, "GET", "/orders", learner)
    assert {o["id"] for o in page["items"]} == {order["id"], second["id"]}
    assert (await ok(world, "GET", f"/orders/{order['id']}", learner))["invoice"]["id"] == invoice["id"]
    assert (await ok(world, "GET", f"/invoices/{invoice['id']}", learner))["number"] == "INV-000001"
    assert len((await ok(world, "GET", "/invoices?status=open", learner))["items"]) == 2


async def test_swahili_learners_get_a_swahili_invoice(world: World) -> None:
    _, monthly = await sell(world, world.a)
    async with world.makers() as session, session.begin():
        learner = await session.get(Learner, world.a.learner.id)
        assert learner is not None
        learner.language = Language.SW
    order = await ok(world, "POST", "/orders", world.a.tokens["learner"], 201, json=cart(monthly["id"]))
    assert order["invoice"]["language"] == "sw"
    assert order["line_items"][0]["description"] == "Somo Premium kwa mwezi"
    text = pdf_text(await download(world, f"/invoices/{order['invoice']['id']}/pdf", world.a.tokens["learner"]))
    assert "ANKARA" in text and "Jumla" in text and "Novemba" in text


async def test_a_percentage_coupon_rounds_to_whole_shillings(world: World) -> None:
    _, price = await sell(world, world.a, shillings=333)
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    coupon = await ok(
        world, "POST", "/coupons", admin, 201, json={"code": "kumi-na-tano", "percent_off": 15, "max_redemptions": 1}
    )
    assert coupon["code"] == "KUMI-NA-TANO"
    quote = await ok(world, "POST", "/cart", learner, json=cart(price["id"], coupon="kumi-na-tano"))
    # 15 % of KES 333 is KES 49.95: the learner pays KES 283, never 283.05.
    assert (quote["subtotal_minor"], quote["discount_minor"], quote["total_minor"]) == (33_300, 5_000, 28_300)
    assert quote["vat_minor"] + quote["net_minor"] == 28_300 and quote["coupon_code"] == "KUMI-NA-TANO"

    order = await ok(world, "POST", "/orders", learner, 201, json=cart(price["id"], coupon="KUMI-NA-TANO"))
    assert order["total_minor"] == 28_300 and order["coupon_id"] == coupon["id"]
    coupons = await ok(world, "GET", "/coupons", admin)
    assert coupons["items"][0]["times_redeemed"] == 1

    # Capped at one redemption: the next cart is refused until the first order is cancelled.
    status, body = await world.call("POST", V1 + "/cart", learner, json=cart(price["id"], coupon="kumi-na-tano"))
    assert status == 422 and body["code"] == "invalid_coupon"
    cancelled = await ok(world, "POST", f"/orders/{order['id']}/cancel", learner)
    assert cancelled["status"] == "cancelled" and cancelled["invoice"]["status"] == "void"
    await ok(world, "POST", "/orders", learner, 201, json=cart(price["id"], coupon="kumi-na-tano"))
    status, body = await world.call("POST", V1 + f"/orders/{order['id']}/cancel", learner)
    assert status == 409 and body["code"] == "order_not_pending"


async def test_a_free_order_is_paid_at_once_with_access_and_no_money_moved(world: World) -> None:
    _, price = await sell(world, world.a, shillings=200)
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    await ok(world, "POST", "/coupons", admin, 201, json={"code": "BURE", "percent_off": 100})
    order = await ok(world, "POST", "/orders", learner, 201, json=cart(price["id"], coupon="BURE"))
    assert order["total_minor"] == 0 and order["status"] == "paid" and order["invoice"]["status"] == "paid"
    async with world.makers() as session:
        [subscription] = (
            await session.scalars(sa.select(Subscription).where(Subscription.learner_id == world.a.learner.id))
        ).all()
        assert subscription.status is SubscriptionStatus.ACTIVE
        assert await session.scalar(sa.select(sa.func.count()).select_from(Payment)) == 0
        assert await session.scalar(sa.select(sa.func.count()).select_from(Receipt)) == 0
    status, body = await world.call(
        "POST", V1 + f"/orders/{order['id']}/payments", learner, json={"phone": "0712345678"}
    )
    assert status == 409 and body["code"] == "order_not_pending"


async def test_unknown_expired_and_inactive_coupons_are_invalid(world: World) -> None:
    _, price = await sell(world, world.a)
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    expired = {"code": "ZAMANI", "amount_off_minor": 5_000, "valid_until": "2026-11-01T00:00:00+03:00"}
    await ok(world, "POST", "/coupons", admin, 201, json=expired)
    later = await ok(
        world,
        "POST",
        "/coupons",
        admin,
        201,
        json={"code": "BAADAYE", "percent_off": 10, "valid_from": "2027-01-01T00:00:00Z"},
    )
    for code in ("HAKUNA", "zamani", "BAADAYE"):
        status, body = await world.call("POST", V1 + "/orders", learner, json=cart(price["id"], coupon=code))
        assert status == 422 and body["code"] == "invalid_coupon", code
    # The other school's codes mean nothing here.
    await ok(
        world, "POST", "/coupons", world.b.tokens["institution_admin"], 201, json={"code": "BETA", "percent_off": 5}
    )
    status, body = await world.call("POST", V1 + "/cart", learner, json=cart(price["id"], coupon="BETA"))
    assert status == 422 and body["code"] == "invalid_coupon"
    # An amount coupon takes whole shillings off, never more than the cart.
    await ok(world, "POST", "/coupons", admin, 201, json={"code": "BURE", "amount_off_minor": 100_000})
    quote = await ok(world, "POST", "/cart", learner, json=cart(price["id"], coupon="bure"))
    assert (quote["discount_minor"], quote["total_minor"], quote["vat_minor"]) == (30_000, 0, 0)
    await ok(world, "PATCH", f"/coupons/{later['id']}", admin, json={"is_active": False})
    status, body = await world.call("PATCH", V1 + f"/coupons/{later['id']}", admin, json={"max_redemptions": 0})
    assert status == 422 and body["code"] == "validation_error"
    assert (await ok(world, "GET", "/coupons?is_active=false", admin))["items"][0]["id"] == later["id"]
    status, body = await world.call("POST", V1 + "/coupons", admin, json={"code": "bure", "percent_off": 5})
    assert status == 409 and body["code"] == "coupon_code_taken"
    both = {"code": "MBILI", "percent_off": 5, "amount_off_minor": 100}
    assert (await world.call("POST", V1 + "/coupons", admin, json=both))[0] == 422


async def test_totals_above_the_mpesa_limit_are_refused(world: World) -> None:
    _, price = await sell(world, world.a, shillings=150_000, interval="year")
    learner = world.a.tokens["learner"]
    body = {"items": [{"price_id": price["id"], "quantity": 2}]}
    for path in ("/cart", "/orders"):
        status, problem = await world.call("POST", V1 + path, learner, json=body)
        assert status == 422 and problem["code"] == "amount_above_mpesa_limit", path
    assert await count_orders(world) == 0
    product = price["product_id"]
    admin = world.a.tokens["institution_admin"]
    for amount in (250_000 * 100 + 100, 30_050, -100):
        status, problem = await world.call(
            "POST", V1 + f"/products/{product}/prices", admin, json={"amount_minor": amount, "interval": "month"}
        )
        assert status == 422 and problem["code"] == "validation_error", amount


async def test_paying_checks_the_order_before_any_provider_is_called(world: World) -> None:
    """Both providers are covered end to end against the simulators in tests/payments/."""
    _, monthly = await sell(world, world.a)
    learner = world.a.tokens["learner"]
    order = await ok(world, "POST", "/orders", learner, 201, json=cart(monthly["id"]))
    status, body = await world.call("POST", V1 + f"/orders/{uuid.uuid4()}/payments", learner, json={})
    assert status == 404
    await ok(world, "POST", f"/orders/{order['id']}/cancel", learner)
    for provider in ("mpesa", "airtel"):
        status, body = await world.call(
            "POST", V1 + f"/orders/{order['id']}/payments", learner, json={"provider": provider}
        )
        assert status == 409 and body["code"] == "order_not_pending"


async def test_fifty_concurrent_retries_with_one_idempotency_key_make_one_order(world: World) -> None:
    _, monthly = await sell(world, world.a)
    headers = {**world.auth(world.a.tokens["learner"]), "Idempotency-Key": "checkout-7f3a"}
    body = cart(monthly["id"])

    async def attempt() -> tuple[int, dict[str, Any]]:
        response = await world.client.post(V1 + "/orders", json=body, headers=headers)
        return response.status, await response.json(content_type=None)

    results = await asyncio.gather(*(attempt() for _ in range(50)))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {201, 409}, statuses
    assert all(b["code"] == "idempotency_in_progress" for s, b in results if s == 409)
    created = {b["id"] for s, b in results if s == 201}
    assert len(created) == 1, created
    assert await count_orders(world) == 1
    status, replay = await world.call("POST", V1 + "/orders", world.a.tokens["learner"], json=body, headers=headers)
    assert status == 201 and replay["id"] in created


async def test_staff_order_for_a_learner_of_their_school(world: World) -> None:
    _, monthly = await sell(world, world.a)
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    status, body = await world.call("POST", V1 + "/orders", admin, json=cart(monthly["id"]))
    assert status == 422 and body["code"] == "learner_required"
    order = await ok(world, "POST", "/orders", admin, 201, json=cart(monthly["id"], learner_id=str(world.a.learner.id)))
    assert order["learner_id"] == str(world.a.learner.id) and order["placed_by_user_id"] is not None
    assert (await ok(world, "GET", "/orders?status=pending", learner))["items"][0]["id"] == order["id"]
    assert (await ok(world, "GET", "/orders?status=paid", admin))["items"] == []
    # A learner buys for themself only, and staff only for their own school's learners.
    status, _ = await world.call(
        "POST", V1 + "/orders", learner, json=cart(monthly["id"], learner_id=str(uuid.uuid4()))
    )
    assert status == 403
    status, _ = await world.call(
        "POST",
        V1 + "/orders",
        world.b.tokens["institution_admin"],
        json=cart(monthly["id"], learner_id=str(world.a.learner.id)),
    )
    assert status == 404


# Products, prices, coupons ----------------------------------------------------------------


async def test_learners_and_instructors_cannot_sell_nor_see_coupons(world: World) -> None:
    product, price = await sell(world, world.a)
    await ok(
        world, "POST", "/coupons", world.a.tokens["institution_admin"], 201, json={"code": "SIRI", "percent_off": 10}
    )
    new_product = {"sku": "X-1", "kind": "subscription", "name_en": "Mine"}
    for role in ("instructor", "learner"):
        token = world.a.tokens[role]
        assert (await world.call("POST", V1 + "/products", token, json=new_product))[0] == 403
        assert (await world.call("PATCH", V1 + f"/products/{product['id']}", token, json={"name_en": "X"}))[0] == 403
        assert (
            await world.call(
                "POST", V1 + f"/products/{product['id']}/prices", token, json={"amount_minor": 100, "interval": "month"}
            )
        )[0] == 403
        assert (await world.call("PATCH", V1 + f"/prices/{price['id']}", token, json={"is_active": False}))[0] == 403
        assert (await world.call("GET", V1 + "/coupons", token))[0] == 403
        assert (await world.call("POST", V1 + "/coupons", token, json={"code": "MINE", "percent_off": 99}))[0] == 403
        # They still read what is on sale.
        assert [p["id"] for p in (await ok(world, "GET", "/products", token))["items"]] == [product["id"]]
        assert [p["id"] for p in (await ok(world, "GET", f"/products/{product['id']}/prices", token))["items"]] == [
            price["id"]
        ]


async def test_withdrawn_products_and_prices_leave_the_shop(world: World) -> None:
    product, price = await sell(world, world.a)
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    withdrawn = await ok(world, "PATCH", f"/prices/{price['id']}", admin, json={"is_active": False})
    assert withdrawn["is_active"] is False and withdrawn["amount_minor"] == 30_000
    assert (await ok(world, "GET", f"/products/{product['id']}/prices", learner))["items"] == []
    assert len((await ok(world, "GET", f"/products/{product['id']}/prices", admin))["items"]) == 1
    status, body = await world.call("POST", V1 + "/cart", learner, json=cart(price["id"]))
    assert status == 422 and body["code"] == "price_inactive"
    # Prices are immutable apart from the switch.
    status, body = await world.call("PATCH", V1 + f"/prices/{price['id']}", admin, json={"amount_minor": 100})
    assert status == 422
    await ok(world, "PATCH", f"/products/{product['id']}", admin, json={"is_active": False, "name_sw": None})
    assert (await ok(world, "GET", "/products", learner))["items"] == []
    assert (await world.call("GET", V1 + f"/products/{product['id']}", learner))[0] == 404
    assert (await ok(world, "GET", "/products?is_active=false", admin))["items"][0]["name_sw"] is None
    status, body = await world.call(
        "POST", V1 + "/products", admin, json={"sku": product["sku"], "kind": "subscription", "name_en": "Again"}
    )
    assert status == 409 and body["code"] == "sku_taken"


async def test_course_products_sell_a_course_of_their_owner(world: World) -> None:
    async with world.makers() as session, session.begin():
        own = (await make_course(session, institution=world.a.institution)).course.id
        other = (await make_course(session, institution=world.b.institution)).course.id
        shared = (await make_course(session, institution=None)).course.id
    admin = world.a.tokens["institution_admin"]
    base = {"sku": "BIO-1", "kind": "course", "name_en": "Form 1 Biology"}
    status, body = await world.call("POST", V1 + "/products", admin, json=base)
    assert status == 422 and body["code"] == "course_required"
    assert (await world.call("POST", V1 + "/products", admin, json={**base, "course_id": str(other)}))[0] == 404
    status, body = await world.call("POST", V1 + "/products", admin, json={**base, "course_id": str(shared)})
    assert status == 422 and body["code"] == "course_not_in_scope"
    product = await ok(world, "POST", "/products", admin, 201, json={**base, "course_id": str(own)})
    status, body = await world.call(
        "POST", V1 + f"/products/{product['id']}/prices", admin, json={"amount_minor": 50_000, "interval": "month"}
    )
    assert status == 422 and body["code"] == "interval_mismatch"
    await ok(
        world, "POST", f"/products/{product['id']}/prices", admin, 201, json={"amount_minor": 0, "interval": "one_time"}
    )

    # The platform sells catalogue courses to every school; schools cannot edit them.
    catalogue = await ok(
        world,
        "POST",
        "/products",
        world.platform_token,
        201,
        json={**base, "sku": "KCSE-ENG", "course_id": str(shared)},
    )
    assert catalogue["institution_id"] is None
    price = await ok(
        world,
        "POST",
        f"/products/{catalogue['id']}/prices",
        world.platform_token,
        201,
        json={"amount_minor": 20_000, "interval": "one_time"},
    )
    for school in (world.a, world.b):
        listed = await ok(world, "GET", "/products?kind=course", school.tokens["learner"])
        assert catalogue["id"] in {p["id"] for p in listed["items"]}
        status, _ = await world.call(
            "PATCH", V1 + f"/products/{catalogue['id']}", school.tokens["institution_admin"], json={"name_en": "Ours"}
        )
        assert status == 403
        order = await ok(world, "POST", "/orders", school.tokens["learner"], 201, json=cart(price["id"]))
        assert order["institution_id"] == str(school.institution.id) and order["invoice"]["number"] == "INV-000001"


# Invoices, receipts, refunds --------------------------------------------------------------


async def test_receipt_pdf_and_refund_decisions(world: World) -> None:
    _, monthly = await sell(world, world.a)
    admin, teacher, learner = (world.a.tokens[r] for r in ROLES)
    order = await ok(world, "POST", "/orders", learner, 201, json=cart(monthly["id"]))
    payment_id, receipt_id = await pay_directly(world, world.a, order, "SKL4H7T2QX")

    assert [r["id"] for r in (await ok(world, "GET", "/receipts", learner))["items"]] == [receipt_id]
    receipt = await ok(world, "GET", f"/receipts/{receipt_id}", learner)
    assert receipt["amount_minor"] == 30_000 and receipt["invoice_id"] == order["invoice"]["id"]
    text = pdf_text(await download(world, f"/receipts/{receipt_id}/pdf", learner))
    assert "RCT-000001" in text and "SKL4H7T2QX" in text and "M-Pesa" in text and "KES 300.00" in text

    status, body = await world.call(
        "POST", V1 + "/refunds", learner, json={"payment_id": payment_id, "amount_minor": 30_100, "reason": "x"}
    )
    assert status == 422 and body["code"] == "refund_exceeds_payment" and body["refundable_minor"] == 30_000
    first = await ok(
        world,
        "POST",
        "/refunds",
        learner,
        201,
        json={"payment_id": payment_id, "amount_minor": 20_000, "reason": "Paid twice"},
    )
    assert first["status"] == "requested" and first["order_id"] == order["id"]
    status, body = await world.call(
        "POST", V1 + "/refunds", learner, json={"payment_id": payment_id, "amount_minor": 20_000}
    )
    assert status == 422 and body["refundable_minor"] == 10_000

    for token in (teacher, learner):
        assert (await world.call("POST", V1 + f"/refunds/{first['id']}/approve", token))[0] == 403
        assert (await world.call("POST", V1 + f"/refunds/{first['id']}/reject", token, json={}))[0] == 403
    approved = await ok(world, "POST", f"/refunds/{first['id']}/approve", admin)
    assert approved["status"] == "approved" and approved["decided_by_id"] and approved["decided_at"]
    # Approved but not sent: it may still be rejected; a decided refund is not approved twice.
    status, body = await world.call("POST", V1 + f"/refunds/{first['id']}/approve", admin)
    assert status == 409 and body["code"] == "refund_not_requested"

    second = await ok(world, "POST", "/refunds", teacher, 201, json={"payment_id": payment_id, "amount_minor": 10_000})
    rejected = await ok(world, "POST", f"/refunds/{second['id']}/reject", admin, json={"reason": "Used the course"})
    assert rejected["status"] == "rejected" and rejected["failure_reason"] == "Used the course"
    # A rejected refund frees its amount again.
    await ok(world, "POST", "/refunds", learner, 201, json={"payment_id": payment_id, "amount_minor": 10_000})
    assert len((await ok(world, "GET", "/refunds", learner))["items"]) == 3
    assert [r["id"] for r in (await ok(world, "GET", "/refunds?status=approved", admin))["items"]] == [first["id"]]
    assert (await ok(world, "GET", f"/refunds/{first['id']}", learner))["status"] == "approved"


# Subscriptions ----------------------------------------------------------------------------


async def make_subscription(world: World, school: School, product: dict[str, Any], price: dict[str, Any]) -> str:
    async with world.makers() as session, session.begin():
        subscription = Subscription(
            id=new_id(),
            institution_id=school.institution.id,
            learner_id=school.learner.id,
            product_id=uuid.UUID(product["id"]),
            price_id=uuid.UUID(price["id"]),
            status=SubscriptionStatus.PAST_DUE,
            current_period_start=T0 - timedelta(days=30),
            current_period_end=T0,
        )
        session.add(subscription)
        await session.flush()
        session.add(
            SubscriptionItem(
                id=new_id(),
                institution_id=school.institution.id,
                subscription_id=subscription.id,
                price_id=uuid.UUID(price["id"]),
            )
        )
        session.add_all(
            SubscriptionRenewalAttempt(
                id=new_id(),
                institution_id=school.institution.id,
                subscription_id=subscription.id,
                period_start=T0,
                attempt_no=n,
                outcome=outcome,
                scheduled_for=T0 + timedelta(days=days),
            )
            for n, (days, outcome) in enumerate(((0, RenewalOutcome.FAILED), (1, RenewalOutcome.SCHEDULED)))
        )
    return str(subscription.id)


async def test_subscriptions_are_read_with_their_items_and_renewal_attempts(world: World) -> None:
    product, price = await sell(world, world.a)
    subscription_id = await make_subscription(world, world.a, product, price)
    learner, admin = world.a.tokens["learner"], world.a.tokens["institution_admin"]
    assert [s["id"] for s in (await ok(world, "GET", "/subscriptions", learner))["items"]] == [subscription_id]
    assert (await ok(world, "GET", "/subscriptions?status=active", admin))["items"] == []
    assert len((await ok(world, "GET", "/subscriptions?status=past_due", admin))["items"]) == 1
    detail = await ok(world, "GET", f"/subscriptions/{subscription_id}", learner)
    assert detail["status"] == "past_due" and [i["price_id"] for i in detail["items"]] == [price["id"]]
    assert [(a["attempt_no"], a["outcome"]) for a in detail["renewal_attempts"]] == [(0, "failed"), (1, "scheduled")]


# Tenancy ----------------------------------------------------------------------------------


async def test_the_other_school_sees_nothing_and_changes_nothing(world: World) -> None:
    product, price = await sell(world, world.a)
    a_admin, a_learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    coupon = await ok(world, "POST", "/coupons", a_admin, 201, json={"code": "ALPHA", "percent_off": 10})
    order = await ok(world, "POST", "/orders", a_learner, 201, json=cart(price["id"]))
    invoice = order["invoice"]
    payment_id, receipt_id = await pay_directly(world, world.a, order, "SKA0000001")
    refund = await ok(world, "POST", "/refunds", a_learner, 201, json={"payment_id": payment_id, "amount_minor": 100})
    subscription_id = await make_subscription(world, world.a, product, price)
    a_id = str(world.a.institution.id)

    reads = [
        f"/products/{product['id']}",
        f"/products/{product['id']}/prices",
        f"/orders/{order['id']}",
        f"/invoices/{invoice['id']}",
        f"/invoices/{invoice['id']}/pdf",
        f"/receipts/{receipt_id}",
        f"/receipts/{receipt_id}/pdf",
        f"/refunds/{refund['id']}",
        f"/subscriptions/{subscription_id}",
    ]
    lists = ["/products", "/orders", "/invoices", "/receipts", "/refunds", "/subscriptions"]
    for role in ROLES:
        token = world.b.tokens[role]
        for path in reads:
            assert (await world.call("GET", V1 + path, token))[0] == 404, (role, path)
        for path in lists:
            assert (await ok(world, "GET", path, token))["items"] == [], (role, path)
        # Writes: 404 for whoever may write at all; a role refused everywhere gets 403.
        admin_only = 404 if role == "institution_admin" else 403
        writes: list[tuple[str, dict[str, Any] | None, int]] = [
            (f"/products/{product['id']}", {"name_en": "Hijacked"}, admin_only),
            (f"/prices/{price['id']}", {"is_active": False}, admin_only),
            (f"/coupons/{coupon['id']}", {"is_active": False}, admin_only),
        ]
        for path, body, expected in writes:
            assert (await world.call("PATCH", V1 + path, token, json=body))[0] == expected, (role, path)
        posts: list[tuple[str, dict[str, Any] | None, int]] = [
            (f"/products/{product['id']}/prices", {"amount_minor": 100, "interval": "month"}, admin_only),
            ("/cart", cart(price["id"]), 404),
            ("/orders", cart(price["id"]), 404),
            ("/orders", cart(price["id"], learner_id=str(world.a.learner.id)), 403 if role == "learner" else 404),
            ("/products", {"sku": "X", "kind": "subscription", "name_en": "X", "institution_id": a_id}, admin_only),
            ("/coupons", {"code": "XYZ", "percent_off": 5, "institution_id": a_id}, admin_only),
            (f"/orders/{order['id']}/cancel", None, 404),
            (f"/orders/{order['id']}/payments", {}, 404),
            ("/refunds", {"payment_id": payment_id, "amount_minor": 100}, 404),
            (f"/refunds/{refund['id']}/approve", None, admin_only),
            (f"/refunds/{refund['id']}/reject", {}, admin_only),
            (f"/refunds/{refund['id']}/send", None, admin_only),
            (f"/payments/{payment_id}/match", {"learner_id": str(world.b.learner.id)}, admin_only),
            (f"/subscriptions/{subscription_id}/renew", {}, 404),
        ]
        for path, body, expected in posts:
            if role != "learner" and path == "/orders" and body and "learner_id" not in body:
                body = {**body, "learner_id": str(world.b.learner.id)}  # staff name a learner of their own
            assert (await world.call("POST", V1 + path, token, json=body))[0] == expected, (role, path)
        if role == "institution_admin":
            assert (await ok(world, "GET", "/coupons", token))["items"] == []
        status, body = await world.call(
            "POST", V1 + "/cart", token, json=cart(price["id"], learner_id=str(world.a.learner.id))
        )
        assert status == (403 if role == "learner" else 404), role
    # Nothing moved in school a.
    still = await ok(world, "GET", f"/orders/{order['id']}", a_learner)
    assert still["status"] == "pending" and still["invoice"]["status"] == "open"
    assert (await ok(world, "GET", f"/refunds/{refund['id']}", a_learner))["status"] == "requested"
    assert (await ok(world, "GET", f"/products/{product['id']}", a_learner))["name_en"] == "Somo Premium"
    assert (await ok(world, "GET", "/coupons", a_admin))["items"][0]["is_active"] is True


async def test_another_learner_of_the_same_school_sees_only_their_own(world: World) -> None:
    _, price = await sell(world, world.a)
    order = await ok(world, "POST", "/orders", world.a.tokens["learner"], 201, json=cart(price["id"]))
    payment_id, receipt_id = await pay_directly(world, world.a, order, "SKS0000002")
    refund = await ok(
        world, "POST", "/refunds", world.a.tokens["learner"], 201, json={"payment_id": payment_id, "amount_minor": 100}
    )
    async with world.makers() as session, session.begin():
        user = await create_user(
            session=session,
            username="classmate",
            password=PASSWORD,
            role=Role.LEARNER,
            institution_id=world.a.institution.id,
            hasher=FAST_HASHER,
        )
        await create_learner(
            session=session,
            institution_id=world.a.institution.id,
            display_name="Classmate",
            phone="0711000009",
            user_id=user.id,
            hasher=FAST_HASHER,
        )
    classmate = await login(world.client, "classmate")
    for path in (
        f"/orders/{order['id']}",
        f"/invoices/{order['invoice']['id']}",
        f"/invoices/{order['invoice']['id']}/pdf",
        f"/receipts/{receipt_id}",
        f"/receipts/{receipt_id}/pdf",
        f"/refunds/{refund['id']}",
    ):
        assert (await world.call("GET", V1 + path, classmate))[0] == 404, path
    for path in ("/orders", "/invoices", "/receipts", "/refunds"):
        assert (await ok(world, "GET", path, classmate))["items"] == [], path
    assert (await world.call("POST", V1 + f"/orders/{order['id']}/cancel", classmate))[0] == 404
    status, _ = await world.call(
        "POST", V1 + "/refunds", classmate, json={"payment_id": payment_id, "amount_minor": 100}
    )
    assert status == 404
    # Staff of the school see every learner's.
    teacher = world.a.tokens["instructor"]
    assert (await ok(world, "GET", f"/orders/{order['id']}", teacher))["id"] == order["id"]
    assert (await ok(world, "GET", f"/receipts/{receipt_id}", teacher))["payment_id"] == payment_id


async def test_concurrent_checkouts_number_invoices_without_gaps_or_twins(world: World) -> None:
    _, monthly = await sell(world, world.a)
    headers = world.auth(world.a.tokens["learner"])

    async def checkout() -> tuple[int, Any]:
        response = await world.client.post(V1 + "/orders", json=cart(monthly["id"]), headers=headers)
        return response.status, await response.json(content_type=None)

    results = await asyncio.gather(*(checkout() for _ in range(8)))
    assert [status for status, _ in results] == [201] * 8, results
    numbers = sorted(body["invoice"]["number"] for _, body in results)
    assert numbers == [f"INV-{n:06d}" for n in range(1, 9)]


async def test_invoice_pdf_survives_text_outside_latin1(world: World) -> None:
    admin, learner = world.a.tokens["institution_admin"], world.a.tokens["learner"]
    product = await ok(
        world,
        "POST",
        "/products",
        admin,
        201,
        json={"sku": "KEMIA", "kind": "subscription", "name_en": "Kemia 🧪 — Ng’ang’a’s “lab” class " + "x" * 150},
    )
    price = await ok(
        world, "POST", f"/products/{product['id']}/prices", admin, 201, json={"amount_minor": 100, "interval": "year"}
    )
    async with world.makers() as session, session.begin():
        profile = await session.get(Learner, world.a.learner.id)
        assert profile is not None
        profile.display_name = "Wanjirũ Ñjeri 😀"
    order = await ok(world, "POST", "/orders", learner, 201, json=cart(price["id"]))
    text = pdf_text(await download(world, f"/invoices/{order['invoice']['id']}/pdf", learner))
    assert "Billed to Wanjiru Njeri\n" in text and "Kemia - Ng'ang'a's \"lab\" class" in text and "KES 1.00" in text
