"""The console's money pages: payments, timelines, the webhook inbox, anomalies, ledger,
suspense matching, refunds and subscriptions. Data is made through the real flows (an order, an
STK push to a scripted gateway, a callback through the inbox, a paybill confirmation), and every
action is checked in the database, including what another school's admin can see and do."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from lms_domain.access import Actor
from lms_domain.clock import FixedClock
from lms_domain.commerce import refunds
from lms_domain.commerce.checkout import place_order
from lms_domain.commerce.models import (
    Order,
    OrderStatus,
    Price,
    PriceInterval,
    Product,
    ProductKind,
    Refund,
    RefundStatus,
)
from lms_domain.commerce.schemas import CartItem, CartRequest, RefundCreate
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.notifications.models import NotificationChannel, NotificationLog, NotificationStatus
from lms_domain.payments import flows, paybill
from lms_domain.payments.models import (
    FailureClass,
    IntentStatus,
    Payment,
    PaymentIntent,
    Provider,
    ProviderAccount,
    ProviderAccountKind,
    WebhookEvent,
)
from lms_domain.payments.ports import StkPushAccepted, StkPushRequest, StkQueryResult
from lms_domain.platform.models import AuditLog
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Learner, Role
from tests.admin.conftest import Console, School
from tests.factories import make_subscription

PRICE = 30_000
SCRIPT = "<script>alert(1)</script>"


class ScriptedGateway:
    """An M-Pesa gateway that accepts every push with a fresh CheckoutRequestID."""

    def __init__(self, tag: str) -> None:
        self.tag, self.count = tag, 0

    async def stk_push(self, request: StkPushRequest) -> StkPushAccepted:
        self.count += 1
        return StkPushAccepted(
            f"m-{self.tag}-{self.count}", f"ws_CO_{self.tag}{self.count:04d}{uuid.uuid4().hex[:6]}", "ok"
        )

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:  # pragma: no cover - never polled here
        raise AssertionError("not polled in these tests")


def stk_body(checkout_id: str, *, receipt: str | None, phone: str = "254712345670") -> bytes:
    callback: dict[str, Any] = {"MerchantRequestID": "m", "CheckoutRequestID": checkout_id}
    if receipt is None:
        callback |= {"ResultCode": 1032, "ResultDesc": "Request cancelled by user"}
    else:
        callback |= {"ResultCode": 0, "ResultDesc": "The service request is processed successfully."}
        callback["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": PRICE // 100},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "TransactionDate", "Value": 20261127101500},
                {"Name": "PhoneNumber", "Value": int(phone)},
            ]
        }
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


async def store_event(
    console: Console, kind: str, key: str, body: bytes, provider: Provider = Provider.MPESA
) -> uuid.UUID:
    async with console.makers() as session, session.begin():
        event = WebhookEvent(
            id=new_id(),
            provider=provider,
            kind=kind,
            event_key=key,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body=body.decode(),
            received_at=console.clock.now(),
        )
        session.add(event)
    return event.id


@dataclass
class Money:
    """One school's money, made through the flows: a paid order (with a late contradicting
    callback), a prompt never answered, a refund request, a paybill payment in suspense and a
    past-due subscription with its dunning history."""

    school: School
    receipt: str
    checkout_id: str
    intent_id: uuid.UUID
    payment_id: uuid.UUID
    silent_checkout_id: str
    refund_id: uuid.UUID
    suspense_receipt: str
    suspense_payment_id: uuid.UUID
    pending_order_id: uuid.UUID
    subscription_id: uuid.UUID
    price_id: uuid.UUID


async def seed(console: Console, school: School, tag: str, shortcode: str) -> Money:
    clock: FixedClock = console.clock
    learner = school.learner
    actor = Actor(user_id=None, role=Role.LEARNER, institution_id=school.institution.id, learner_id=learner.id)
    staff = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=school.institution.id)
    async with console.makers() as session, session.begin():
        product = Product(
            id=new_id(),
            institution_id=school.institution.id,
            sku=f"P-{tag}",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Maths",
        )
        session.add(product)
        await session.flush()
        price = Price(
            id=new_id(),
            institution_id=school.institution.id,
            product_id=product.id,
            amount_minor=PRICE,
            interval=PriceInterval.MONTH,
        )
        session.add(price)
        session.add(
            ProviderAccount(
                id=new_id(),
                institution_id=school.institution.id,
                provider=Provider.MPESA,
                kind=ProviderAccountKind.PAYBILL,
                shortcode=shortcode,
                base_url="",
                credentials_ref="",
            )
        )

    async def order() -> uuid.UUID:
        async with console.makers() as session, session.begin():
            placed = await place_order(
                session=session, actor=actor, data=CartRequest(items=[CartItem(price_id=price.id)]), clock=clock
            )
        return placed.id

    gateway = ScriptedGateway(tag)

    async def push(order_id: uuid.UUID) -> PaymentIntent:
        clock.advance(timedelta(minutes=3))
        return await flows.start_stk_payment(
            sessions=console.makers,
            actor=actor,
            order_id=order_id,
            msisdn="0712 345 670",
            idempotency_key=f"{tag}-{uuid.uuid4().hex}",
            gateway=gateway,
            clock=clock,
            callback_url="https://example.test/cb",
        )

    paid = await push(await order())
    assert paid.provider_request_id is not None
    receipt = f"SK{tag}000001"
    for body in (stk_body(paid.provider_request_id, receipt=receipt), stk_body(paid.provider_request_id, receipt=None)):
        event_id = await store_event(console, flows.STK_CALLBACK_KIND, paid.provider_request_id, body)
        async with console.makers() as session, session.begin():
            await flows.settle_from_callback(session, event_id, clock)
    silent = await push(await order())
    assert silent.provider_request_id is not None
    async with console.makers() as session, session.begin():
        payment = await session.scalar(sa.select(Payment).where(Payment.intent_id == paid.id))
        assert payment is not None
        refund = await refunds.request_refund(
            session=session,
            actor=staff,
            data=RefundCreate(payment_id=payment.id, amount_minor=PRICE, reason=f"Paid twice {SCRIPT}"),
            clock=clock,
        )
    pending_order_id = await order()

    # A paybill payment with two neighbouring digits of the account number swapped.
    digits = learner.account_no
    i = next(i for i in range(len(digits) - 1) if digits[i] != digits[i + 1])
    swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :]
    suspense_receipt = f"UK{tag}00SUSP"
    confirmation = {
        "TransactionType": "Pay Bill",
        "TransID": suspense_receipt,
        "TransTime": "20261127101325",
        "TransAmount": str(PRICE // 100),
        "BusinessShortCode": shortcode,
        "BillRefNumber": swapped,
        "MSISDN": "254722000111",
        "FirstName": SCRIPT,
    }
    event_id = await store_event(
        console, paybill.CONFIRMATION_KIND, suspense_receipt, json.dumps(confirmation).encode()
    )
    async with console.makers() as session, session.begin():
        await paybill.record_confirmation(session, event_id, clock)
        suspense_payment = await session.scalar(sa.select(Payment).where(Payment.provider_receipt == suspense_receipt))
        assert suspense_payment is not None and suspense_payment.learner_id is None

        subscription = await make_subscription(
            session, learner=learner, due=clock.now() - timedelta(days=2), status=SubscriptionStatus.PAST_DUE
        )
        session.add(
            SubscriptionRenewalAttempt(
                id=new_id(),
                institution_id=school.institution.id,
                subscription_id=subscription.id,
                period_start=subscription.current_period_end,
                attempt_no=1,
                dunning_step=1,
                outcome=RenewalOutcome.INVITED,
                scheduled_for=subscription.current_period_end,
                invited_at=clock.now(),
                detail=f"dunning-{tag}",
            )
        )
        session.add(
            NotificationLog(
                id=new_id(),
                institution_id=school.institution.id,
                learner_id=learner.id,
                event="dunning_attempt",
                channel=NotificationChannel.SMS,
                language=Language.EN,
                recipient="+254711000001",
                body=f"Reminder {tag}: renew your plan",
                status=NotificationStatus.QUEUED,
                dedupe_key=f"dunning:{subscription.id}:{subscription.current_period_end.isoformat()}:1",
            )
        )
    return Money(
        school=school,
        receipt=receipt,
        checkout_id=paid.provider_request_id,
        intent_id=paid.id,
        payment_id=payment.id,
        silent_checkout_id=silent.provider_request_id,
        refund_id=refund.id,
        suspense_receipt=suspense_receipt,
        suspense_payment_id=suspense_payment.id,
        pending_order_id=pending_order_id,
        subscription_id=subscription.id,
        price_id=price.id,
    )


async def seed_both(console: Console) -> tuple[Money, Money]:
    a = await seed(console, console.a, "AA", "600100")
    b = await seed(console, console.b, "BB", "600200")
    return a, b


def markers(money: Money) -> list[str]:
    """Strings only one school's pages may ever show."""
    return [money.receipt, money.checkout_id, money.silent_checkout_id, money.suspense_receipt, str(money.intent_id)]


async def scalar(console: Console, stmt: Any) -> Any:
    async with console.makers() as session:
        return await session.scalar(stmt)


async def audits(console: Console, action: str) -> list[AuditLog]:
    async with console.makers() as session:
        return list(await session.scalars(sa.select(AuditLog).where(AuditLog.action == action)))


# Search, timeline, inbox, anomalies, ledger ----------------------------------------------


async def test_payments_are_found_by_receipt_phone_and_request_id(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)

    status, html = await admin.get(f"/admin/payments?q={a.receipt.lower()}")
    assert status == 200 and a.receipt in html and f'data-payment="{a.payment_id}"' in html
    assert b.receipt not in html
    # Any local way of typing the payer's number finds the payment and the prompts.
    for typed in ("0712345670", "0712 345 670", "+254712345670", "254712345670"):
        status, html = await admin.get(f"/admin/payments?q={typed.replace('+', '%2B').replace(' ', '+')}")
        assert a.receipt in html, typed
    status, html = await admin.get(f"/admin/payments?kind=prompts&q={a.checkout_id}")
    assert f'data-intent="{a.intent_id}"' in html and a.silent_checkout_id not in html
    status, html = await admin.get("/admin/payments?kind=prompts&status=pending")
    assert a.silent_checkout_id in html and a.checkout_id not in html
    status, html = await admin.get("/admin/payments?q=SKNOTHING1")
    assert "Nothing found." in html
    # Dates are Nairobi days: the payments were made on 27 November.
    assert a.receipt in (await admin.get("/admin/payments?from=2026-11-27&to=2026-11-27"))[1]
    assert a.receipt not in (await admin.get("/admin/payments?from=2026-11-28"))[1]
    # Bad filters are refused, not ignored.
    assert (await admin.get("/admin/payments?status=bogus"))[0] == 422
    assert (await admin.get("/admin/payments?from=yesterday"))[0] == 422
    assert (await admin.get("/admin/payments?kind=prompts&status=settled"))[0] == 422

    response = await admin.get_response("/admin/payments?format=csv")
    text = await response.text()
    assert response.headers["Content-Type"].startswith("text/csv") and a.receipt in text and a.suspense_receipt in text
    assert b.receipt not in text and b.suspense_receipt not in text


async def test_pagination_and_sorting_of_prompts(console: Console) -> None:
    a, _ = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/payments?kind=prompts&limit=1&sort=created")
    assert status == 200
    first = html.index(f'data-intent="{a.intent_id}"')
    assert a.silent_checkout_id not in html[first:]
    next_link = html.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    status, html = await admin.get(next_link)
    assert status == 200 and a.silent_checkout_id in html and f'data-intent="{a.intent_id}"' not in html


async def test_intent_timeline_shows_the_request_callbacks_and_ledger(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get(f"/admin/payments/intents/{a.intent_id}")
    assert status == 200
    assert a.checkout_id in html and a.receipt in html
    steps = ("created", "requested", "callback", "resolved", "payment", "ledger")
    positions = [html.index(f'data-step="{s}"') for s in steps]
    assert positions == sorted(positions)
    assert html.count('data-step="callback"') == 2  # the success, then the late contradicting failure
    assert "anomaly: ResultCode 1032" in html and "&#34;MpesaReceiptNumber&#34;" in html
    assert 'data-account="mpesa_clearing"' in html and 'data-account="revenue"' in html
    assert f'data-refund="{a.refund_id}"' in html and SCRIPT not in html
    # Another school's prompt does not exist; nor does a made-up one.
    assert (await admin.get(f"/admin/payments/intents/{b.intent_id}"))[0] == 404
    assert (await admin.get(f"/admin/payments/intents/{uuid.uuid4()}"))[0] == 404
    assert (await admin.get("/admin/payments/intents/not-an-id"))[0] == 404

    # A payment without a prompt has its own page; one with a prompt leads to the timeline.
    status, html = await admin.get(f"/admin/payments/receipts/{a.suspense_payment_id}")
    assert status == 200 and a.suspense_receipt in html and 'data-account="suspense"' in html
    assert SCRIPT not in html and "&lt;script&gt;" in html
    response = await admin.get_response(f"/admin/payments/receipts/{a.payment_id}")
    assert response.status == 303 and response.headers["Location"] == f"/admin/payments/intents/{a.intent_id}"
    assert (await admin.get(f"/admin/payments/receipts/{b.suspense_payment_id}"))[0] == 404


async def test_webhook_inbox_is_scoped_and_shows_raw_bodies_escaped(console: Console) -> None:
    a, b = await seed_both(console)
    stray = await store_event(
        console, flows.STK_CALLBACK_KIND, "ws_CO_nobody", stk_body("ws_CO_nobody", receipt="SKSTRAY001")
    )
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/payments/inbox")
    assert status == 200 and a.checkout_id in html and a.suspense_receipt in html
    assert SCRIPT not in html and "&lt;script&gt;" in html  # the raw body, escaped
    assert b.checkout_id not in html and b.suspense_receipt not in html and "ws_CO_nobody" not in html
    status, html = await admin.get("/admin/payments/inbox?kind=c2b_confirmation")
    assert a.suspense_receipt in html and a.checkout_id not in html
    status, html = await admin.get("/admin/payments/inbox?status=ignored")
    assert a.checkout_id in html and a.suspense_receipt not in html
    assert (await admin.get("/admin/payments/inbox?status=nope"))[0] == 422
    text = await (await admin.get_response("/admin/payments/inbox?format=csv")).text()
    assert a.checkout_id in text and b.checkout_id not in text and "ws_CO_nobody" not in text

    async with console.makers() as session:
        b_event = await session.scalar(
            sa.select(WebhookEvent.id).where(WebhookEvent.event_key == b.checkout_id).limit(1)
        )
    assert (await admin.get(f"/admin/payments/inbox/{b_event}"))[0] == 404
    assert (await admin.get(f"/admin/payments/inbox/{stray}"))[0] == 404

    # Platform admins see everything, including a callback no school can claim.
    root = await console.as_user(console.root)
    status, html = await root.get("/admin/payments/inbox")
    assert a.checkout_id in html and b.checkout_id in html and "ws_CO_nobody" in html
    status, html = await root.get(f"/admin/payments/inbox/{stray}")
    assert status == 200 and "SKSTRAY001" in html


async def test_anomalies_list_what_needs_a_person(console: Console) -> None:
    a, b = await seed_both(console)
    broken = await store_event(console, flows.STK_CALLBACK_KIND, "ws_CO_broken", b"{not json")
    async with console.makers() as session, session.begin():
        await flows.settle_from_callback(session, broken, console.clock)
    console.clock.advance(timedelta(minutes=5))  # past the 60 s poll window
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/payments/anomalies")
    assert status == 200
    stuck = html.split('id="stuck"')[1].split("</section>")[0]
    assert a.silent_checkout_id not in stuck  # shown by learner and time, linked by id
    silent_id = await scalar(
        console, sa.select(PaymentIntent.id).where(PaymentIntent.provider_request_id == a.silent_checkout_id)
    )
    assert f'data-intent="{silent_id}"' in stuck
    contested = html.split('id="contested"')[1].split("</section>")[0]
    assert a.checkout_id in contested and "anomaly" in contested
    assert b.checkout_id not in html and "ws_CO_broken" not in html
    text = await (await admin.get_response("/admin/payments/anomalies?format=csv")).text()
    assert str(silent_id) in text and b.checkout_id not in text

    # A prompt refused on our own credentials (as ``push_intent`` records it) pages a person.
    async with console.makers() as session, session.begin():
        await session.execute(
            sa.update(PaymentIntent)
            .where(PaymentIntent.id == silent_id)
            .values(
                status=IntentStatus.FAILED, failure_class=FailureClass.CONFIGURATION, result_desc="Invalid Access Token"
            )
        )
    status, html = await admin.get("/admin/payments/anomalies")
    configuration = html.split('id="configuration"')[1].split("</section>")[0]
    assert f'data-intent="{silent_id}"' in configuration and "Invalid Access Token" in configuration
    assert f'data-intent="{silent_id}"' not in html.split('id="stuck"')[1].split("</section>")[0]

    root = await console.as_user(console.root)
    status, html = await root.get("/admin/payments/anomalies")
    failed = html.split('id="failed-events"')[1].split("</section>")[0]
    assert "ws_CO_broken" in failed and b.checkout_id in html


async def test_ledger_balances_per_account(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/ledger")
    assert status == 200
    # The paid order and the paybill payment in suspense.
    assert 'data-account="mpesa_clearing" data-balance="60000"' in html
    assert 'data-account="suspense" data-balance="-30000"' in html
    assert 'id="total">KES 0.00<' in html
    status, html = await admin.get("/admin/ledger?at=2026-11-26")
    assert 'data-account="mpesa_clearing" data-balance="0"' in html
    assert (await admin.get("/admin/ledger?at=someday"))[0] == 422
    # Another school's books do not exist for this admin, in the page or the export.
    assert (await admin.get(f"/admin/ledger?institution={console.b.institution.id}"))[0] == 404
    assert (await admin.get_response(f"/admin/ledger?institution={console.b.institution.id}&format=csv")).status == 404
    text = await (await admin.get_response("/admin/ledger?format=csv")).text()
    assert "mpesa_clearing" in text and str(console.b.institution.id) not in text

    # School B's admin sees B's own books only (B has the same amounts, so compare the id).
    other = await console.as_user(console.b.admin)
    text = await (await other.get_response("/admin/ledger?format=csv")).text()
    assert str(console.b.institution.id) in text and str(console.a.institution.id) not in text

    root = await console.as_user(console.root)
    status, html = await root.get(f"/admin/ledger?institution={console.a.institution.id}")
    assert status == 200 and 'data-account="mpesa_clearing" data-balance="60000"' in html
    assert "Alpha School" in html


async def test_money_pages_need_an_admin(console: Console) -> None:
    instructor = await console.as_user(console.a.instructor)
    for path in (
        "/admin/payments",
        "/admin/payments/inbox",
        "/admin/ledger",
        "/admin/suspense",
        "/admin/refunds",
        "/admin/subscriptions",
    ):
        assert (await instructor.get(path))[0] == 403, path


async def test_no_page_or_export_shows_another_schools_money(console: Console) -> None:
    a, b = await seed_both(console)
    other = await console.as_user(console.b.admin)
    lists = [
        "/admin/payments",
        "/admin/payments?kind=prompts",
        "/admin/payments/inbox",
        "/admin/payments/anomalies",
        "/admin/ledger",
        "/admin/suspense",
        "/admin/refunds",
        "/admin/subscriptions",
    ]
    for path in lists:
        for url in (path, path + ("&" if "?" in path else "?") + "format=csv"):
            status, body = await other.get(url)
            assert status == 200, url
            for marker in markers(a):
                assert marker not in body, (url, marker)
            assert "Learner Alpha School" not in body, url
    # Searching for A's receipt or phone from B finds nothing of A's (the search box echoes
    # what was typed, so look for A's rows, not the text).
    rows = [
        f'data-payment="{a.payment_id}"',
        f'data-intent="{a.intent_id}"',
        f'data-refund="{a.refund_id}"',
        f'data-payment="{a.suspense_payment_id}"',
    ]
    for path in ("/admin/payments", "/admin/payments?kind=prompts", "/admin/refunds", "/admin/suspense"):
        sep = "&" if "?" in path else "?"
        for q in (a.receipt, a.suspense_receipt, a.checkout_id, "0711000001", "0712345670"):
            status, body = await other.get(f"{path}{sep}q={q}")
            assert status == 200 and not any(row in body for row in rows), (path, q)
    details = [
        f"/admin/payments/intents/{a.intent_id}",
        f"/admin/payments/receipts/{a.payment_id}",
        f"/admin/suspense/{a.suspense_payment_id}",
        f"/admin/subscriptions/{a.subscription_id}",
    ]
    for path in details:
        assert (await other.get(path))[0] == 404, path


# Suspense ---------------------------------------------------------------------------------


async def test_suspense_payment_is_matched_to_a_learner_found_by_phone(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/suspense")
    assert status == 200 and a.suspense_receipt in html and b.suspense_receipt not in html
    assert "Learner Alpha School" in html  # the one-typo candidate
    assert a.suspense_receipt in (await admin.get("/admin/suspense?q=254722000111"))[1]
    assert a.suspense_receipt not in (await admin.get("/admin/suspense?q=nobody"))[1]
    assert a.suspense_receipt not in (await admin.get("/admin/suspense?from=2026-11-28"))[1]

    status, html = await admin.get(f"/admin/suspense/{a.suspense_payment_id}?q=0711+000+001")
    assert status == 200 and html.count(f'data-learner="{console.a.learner.id}"') == 2  # candidate and found
    assert str(a.pending_order_id) in html  # the pending order of exactly the held amount
    status, html = await admin.get(f"/admin/suspense/{a.suspense_payment_id}?q={console.b.learner.account_no}")
    assert f'data-learner="{console.b.learner.id}"' not in html

    # Bad input: field errors, nothing changes.
    path = f"/admin/suspense/{a.suspense_payment_id}/match"
    assert (await admin.post(path, {"learner_id": "not-a-uuid"})).status == 422
    assert (await admin.post(path, {})).status == 422
    # Another school's learner, or another school's payment: not found, nothing changes.
    assert (await admin.post(path, {"learner_id": str(console.b.learner.id)})).status == 404
    other = await console.as_user(console.b.admin)
    assert (await other.post(path, {"learner_id": str(console.b.learner.id)})).status == 404
    assert (await other.get(f"/admin/suspense/{a.suspense_payment_id}"))[0] == 404
    assert await scalar(console, sa.select(Payment.learner_id).where(Payment.id == a.suspense_payment_id)) is None
    assert await audits(console, "payment.suspense_match") == []

    response = await admin.post(path, {"learner_id": str(console.a.learner.id), "order_id": str(a.pending_order_id)})
    assert response.status == 303 and response.headers["Location"] == "/admin/suspense"
    assert (
        await scalar(console, sa.select(Payment.learner_id).where(Payment.id == a.suspense_payment_id))
        == console.a.learner.id
    )
    assert await scalar(console, sa.select(Order.status).where(Order.id == a.pending_order_id)) is OrderStatus.PAID
    [entry] = await audits(console, "payment.suspense_match")
    assert entry.target_id == str(a.suspense_payment_id) and entry.institution_id == console.a.institution.id
    assert entry.before is not None and entry.before["learner_id"] is None and entry.before["held_minor"] == PRICE
    assert (
        entry.after is not None
        and entry.after["learner_id"] == str(console.a.learner.id)
        and entry.after["held_minor"] == 0
    )
    status, html = await admin.get("/admin/suspense")
    assert a.suspense_receipt not in html and "Payment matched and applied to the order." in html
    # Matching twice is refused by the domain.
    assert (await admin.post(path, {"learner_id": str(console.a.learner.id)})).status == 404


# Refunds ----------------------------------------------------------------------------------


async def test_refunds_are_approved_rejected_and_scoped(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/refunds?status=requested")
    assert status == 200 and f'data-refund="{a.refund_id}"' in html and f'data-refund="{b.refund_id}"' not in html
    assert SCRIPT not in html and "Paid twice &lt;script&gt;" in html
    assert f'data-refund="{a.refund_id}"' not in (await admin.get("/admin/refunds?status=approved"))[1]
    assert f'data-refund="{a.refund_id}"' in (await admin.get(f"/admin/refunds?q={a.receipt}"))[1]
    assert (await admin.get("/admin/refunds?status=maybe"))[0] == 422

    # School B's admin can neither see nor decide A's refund.
    other = await console.as_user(console.b.admin)
    assert (await other.post(f"/admin/refunds/{a.refund_id}/approve")).status == 404
    assert (await other.post(f"/admin/refunds/{a.refund_id}/reject", {"reason": "no"})).status == 404
    assert await scalar(console, sa.select(Refund.status).where(Refund.id == a.refund_id)) is RefundStatus.REQUESTED
    # Without the form token nothing happens either.
    assert (await admin.post(f"/admin/refunds/{a.refund_id}/approve", csrf=False)).status == 403
    assert await scalar(console, sa.select(Refund.status).where(Refund.id == a.refund_id)) is RefundStatus.REQUESTED

    response = await admin.post(f"/admin/refunds/{a.refund_id}/approve", {"back": "/admin/refunds?status=approved"})
    assert response.status == 303 and response.headers["Location"] == "/admin/refunds?status=approved"
    async with console.makers() as session:
        refund = await session.get(Refund, a.refund_id)
        assert refund is not None and refund.status is RefundStatus.APPROVED
        assert refund.decided_by_id is not None and refund.decided_at == console.clock.now()
    [entry] = await audits(console, "refund.approve")
    assert entry.before is not None and entry.before["status"] == "requested"
    assert entry.after is not None and entry.after["status"] == "approved"
    assert (await admin.post(f"/admin/refunds/{a.refund_id}/approve")).status == 409

    assert (await admin.post(f"/admin/refunds/{b.refund_id}/send")).status == 404
    # Bad input on reject: a reason too long; nothing changes.
    assert (await admin.post(f"/admin/refunds/{a.refund_id}/reject", {"reason": "x" * 501})).status == 422
    assert await scalar(console, sa.select(Refund.status).where(Refund.id == a.refund_id)) is RefundStatus.APPROVED

    # An approved refund not yet sent may still be rejected; the reason is kept.
    response = await admin.post(f"/admin/refunds/{a.refund_id}/reject", {"reason": "Course already used"})
    assert response.status == 303
    async with console.makers() as session:
        refund = await session.get(Refund, a.refund_id)
        assert refund is not None and refund.status is RefundStatus.REJECTED
        assert refund.failure_reason == "Course already used"
    [entry] = await audits(console, "refund.reject")
    assert entry.before is not None and entry.before["status"] == "approved" and entry.after is not None
    assert entry.after["failure_reason"] == "Course already used"
    # A rejected refund is neither approved nor sent.
    assert (await admin.post(f"/admin/refunds/{a.refund_id}/send")).status == 409


async def test_a_partial_refund_is_not_sent(console: Console) -> None:
    a, _ = await seed_both(console)
    staff = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=console.a.institution.id)
    async with console.makers() as session, session.begin():
        await refunds.reject_refund(
            session=session, actor=staff, refund_id=a.refund_id, reason=None, clock=console.clock
        )
        partial = await refunds.request_refund(
            session=session,
            actor=staff,
            data=RefundCreate(payment_id=a.payment_id, amount_minor=10_000),
            clock=console.clock,
        )
    admin = await console.as_user(console.a.admin)
    assert (await admin.post(f"/admin/refunds/{partial.id}/approve")).status == 303
    response = await admin.post(f"/admin/refunds/{partial.id}/send")
    assert response.status == 409 and "whole payments only" in await response.text()
    assert await scalar(console, sa.select(Refund.status).where(Refund.id == partial.id)) is RefundStatus.APPROVED
    assert await audits(console, "refund.send") == []


# Subscriptions ----------------------------------------------------------------------------


async def test_subscriptions_by_state_with_their_dunning_history(console: Console) -> None:
    a, b = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/subscriptions?status=past_due")
    assert status == 200 and f'data-subscription="{a.subscription_id}"' in html
    assert f'data-subscription="{b.subscription_id}"' not in html
    assert f'data-subscription="{a.subscription_id}"' not in (await admin.get("/admin/subscriptions?status=active"))[1]
    for q in ("alpha", "0711000001", console.a.learner.account_no):
        assert f'data-subscription="{a.subscription_id}"' in (await admin.get(f"/admin/subscriptions?q={q}"))[1], q
    assert f'data-subscription="{a.subscription_id}"' not in (await admin.get("/admin/subscriptions?q=beta"))[1]
    assert (await admin.get("/admin/subscriptions?status=lapsed"))[0] == 422
    text = await (await admin.get_response("/admin/subscriptions?format=csv&status=past_due")).text()
    assert str(a.subscription_id) in text and str(b.subscription_id) not in text

    status, html = await admin.get(f"/admin/subscriptions/{a.subscription_id}")
    assert status == 200 and "dunning-AA" in html and "Reminder AA: renew your plan" in html
    assert "Reminder BB" not in html
    assert (await admin.get(f"/admin/subscriptions/{b.subscription_id}"))[0] == 404

    async with console.makers() as session, session.begin():
        subscription = await session.get(Subscription, a.subscription_id)
        assert subscription is not None
        subscription.status = SubscriptionStatus.GRACE
    assert f'data-subscription="{a.subscription_id}"' in (await admin.get("/admin/subscriptions?status=grace"))[1]


async def test_money_pages_render_in_kiswahili(console: Console) -> None:
    a, _ = await seed_both(console)
    admin = await console.as_user(console.a.admin)
    await admin.post("/admin/language", {"lang": "sw", "back": "/admin"})
    for path, heading in (
        ("/admin/refunds", "Marejesho ya pesa"),
        ("/admin/ledger", "Leja"),
        (f"/admin/payments/intents/{a.intent_id}", "Mfuatano wa malipo"),
    ):
        status, html = await admin.get(path)
        assert status == 200 and f"<h1>{heading}" in html, path
    assert await scalar(console, sa.select(sa.func.count()).select_from(Learner)) >= 2
