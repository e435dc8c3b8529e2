"""Console pages: payments, the webhook inbox, anomalies, the ledger, suspense, refunds and
subscriptions. Every read is a ``lms_domain`` console function scoped by the actor; every
action is the flow the REST API calls (``paybill.match_suspense``, ``refunds.approve_refund``,
``refunds.reject_refund``, ``reversals.send_refund``), audited in the same unit of work."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from lms_domain.commerce import refunds
from lms_domain.commerce.models import RefundStatus
from lms_domain.commerce.schemas import RefundDecision, RefundOut
from lms_domain.errors import DomainError
from lms_domain.payments import console, paybill, reversals
from lms_domain.payments.models import FailureClass, IntentStatus, PaymentStatus, Provider, WebhookStatus
from lms_domain.payments.schemas import PaymentOut, SuspenseMatch
from lms_domain.subscriptions import console as subscription_console
from lms_domain.subscriptions.models import SubscriptionStatus
from server.admin.menu import ADMINS
from server.admin.views import NAIROBI, AdminRoutes, FormInvalid, Page, csv_response
from server.keys import gateways_key, sessionmaker_key, settings_key

routes = AdminRoutes()

PROVIDERS = [(p.value, p.value) for p in Provider]
PAYMENT_STATUSES = [(s.value, s.value) for s in PaymentStatus]
INTENT_STATUSES = [(s.value, s.value) for s in IntentStatus]
FAILURE_CLASSES = [(f.value, f.value) for f in FailureClass]
WEBHOOK_STATUSES = [(s.value, s.value) for s in WebhookStatus]
REFUND_STATUSES = [(s.value, s.value) for s in RefundStatus]
SUBSCRIPTION_STATUSES = [(s.value, s.value) for s in SubscriptionStatus]


def _query(page: Page, *names: str) -> dict[str, Any]:
    """The named query-string parameters that were given, the date range, and paging (all
    rows for a CSV export)."""
    data: dict[str, Any] = {name: page.q(name) for name in names if page.q(name)}
    since, until = page.day_range()
    data.update({k: v for k, v in (("since", since), ("until", until)) if v is not None})
    if page.wants_csv:
        data["limit"] = console.EXPORT_LIMIT
        return data
    data.update({k: page.q(k) for k in ("cursor", "limit") if page.q(k)})
    return data


def _filename(stem: str, page: Page) -> str:
    return f"{stem}-{page.clock.now().astimezone(NAIROBI):%Y%m%d-%H%M}.csv"


# Payments and prompts ---------------------------------------------------------------------


@routes.get("/admin/payments", roles=ADMINS)
async def list_payments(page: Page) -> web.StreamResponse:
    kind = "prompts" if page.q("kind") == "prompts" else "payments"
    payments: list[console.PaymentRow] = []
    intents: list[console.IntentRow] = []
    if kind == "prompts":
        iquery = page.validate(console.IntentQuery, _query(page, "q", "provider", "status", "failure_class", "sort"))
        async with page.read() as session:
            intents, cursor = await console.search_intents(session=session, actor=page.actor, query=iquery)
        if page.wants_csv:
            return csv_response(
                _filename("payment-prompts", page),
                [
                    "intent_id", "created", "provider", "status", "amount", "currency", "phone", "learner",
                    "account_reference", "request_id", "receipt", "result_code", "result_desc", "failure_class",
                ],
                (
                    [
                        i.id, i.created_at, i.provider.value, i.status.value, i.amount_minor / 100, i.currency,
                        i.msisdn, i.learner_name, i.account_reference, i.provider_request_id, i.receipt,
                        i.result_code, i.result_desc, i.failure_class.value if i.failure_class else "",
                    ]
                    for i in intents
                ),
            )  # fmt: skip
    else:
        pquery = page.validate(console.PaymentQuery, _query(page, "q", "provider", "status", "sort"))
        async with page.read() as session:
            payments, cursor = await console.search_payments(session=session, actor=page.actor, query=pquery)
        if page.wants_csv:
            return csv_response(
                _filename("payments", page),
                [
                    "payment_id", "paid", "provider", "receipt", "status", "amount", "currency", "phone",
                    "learner", "account_reference", "payer_name", "request_id",
                ],
                (
                    [
                        p.id, p.paid_at, p.provider.value, p.provider_receipt, p.status.value, p.amount_minor / 100,
                        p.currency, p.msisdn, p.learner_name, p.account_reference, p.payer_name,
                        p.provider_request_id,
                    ]
                    for p in payments
                ),
            )  # fmt: skip
    return await page.render(
        "admin/money/payments.html",
        {
            "kind": kind,
            "payments": payments,
            "intents": intents,
            "next_cursor": cursor,
            "fields": _payment_fields(kind),
        },
    )


def _payment_fields(kind: str) -> list[dict[str, Any]]:
    fields: list[dict[str, Any]] = [
        {"name": "q", "label": "Receipt, phone or request id", "placeholder": "0712 345 678"},
        {"name": "provider", "label": "Provider", "options": PROVIDERS},
        {"name": "status", "label": "Status", "options": INTENT_STATUSES if kind == "prompts" else PAYMENT_STATUSES},
    ]
    if kind == "prompts":
        fields.append({"name": "failure_class", "label": "Failure class", "options": FAILURE_CLASSES})
    return fields


@routes.get("/admin/payments/intents/{intent_id}", roles=ADMINS)
async def show_intent(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        timeline = await console.intent_timeline(
            session=session, actor=page.actor, intent_id=page.path_uuid("intent_id")
        )
    return await page.render("admin/money/intent.html", {"t": timeline})


@routes.get("/admin/payments/receipts/{payment_id}", roles=ADMINS)
async def show_payment(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        detail = await console.payment_detail(
            session=session, actor=page.actor, payment_id=page.path_uuid("payment_id")
        )
    if detail.payment.intent_id is not None:
        return await page.redirect(f"/admin/payments/intents/{detail.payment.intent_id}")
    return await page.render("admin/money/payment.html", {"d": detail})


# The webhook inbox ------------------------------------------------------------------------


@routes.get("/admin/payments/inbox", roles=ADMINS)
async def list_inbox(page: Page) -> web.StreamResponse:
    query = page.validate(console.InboxQuery, _query(page, "q", "provider", "status", "kind"))
    async with page.read() as session:
        events, cursor = await console.list_inbox(session=session, actor=page.actor, query=query)
        kinds = await console.inbox_kinds(session=session, actor=page.actor)
    if page.wants_csv:
        return csv_response(
            _filename("webhook-inbox", page),
            ["event_id", "received", "provider", "kind", "event_key", "status", "error", "attempts", "body"],
            (
                [
                    e.id,
                    e.received_at,
                    e.provider.value,
                    e.kind,
                    e.event_key,
                    e.status.value,
                    e.error,
                    e.attempts,
                    e.body,
                ]
                for e in events
            ),
        )
    fields = [
        {"name": "q", "label": "Event key", "placeholder": "ws_CO_..."},
        {"name": "provider", "label": "Provider", "options": PROVIDERS},
        {"name": "status", "label": "Status", "options": WEBHOOK_STATUSES},
        {"name": "kind", "label": "Kind", "options": [(k, k) for k in kinds]},
    ]
    return await page.render("admin/money/inbox.html", {"events": events, "next_cursor": cursor, "fields": fields})


@routes.get("/admin/payments/inbox/{event_id}", roles=ADMINS)
async def show_inbox_event(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        event = await console.get_inbox_event(session=session, actor=page.actor, event_id=page.path_uuid("event_id"))
    return await page.render("admin/money/inbox_event.html", {"e": event})


# Anomalies --------------------------------------------------------------------------------


@routes.get("/admin/payments/anomalies", roles=ADMINS)
async def show_anomalies(page: Page) -> web.StreamResponse:
    poll_after = timedelta(seconds=page.app[settings_key].payments.poll_after_s)
    async with page.read() as session:
        found = await console.anomalies(session=session, actor=page.actor, now=page.clock.now(), poll_after=poll_after)
    if page.wants_csv:
        rows: list[list[Any]] = []
        rows += [
            ["stuck", i.id, i.created_at, i.status.value, i.provider_request_id, i.result_desc] for i in found.stuck
        ]
        rows += [
            ["configuration", i.id, i.created_at, i.status.value, i.provider_request_id, i.result_desc]
            for i in found.configuration
        ]
        for group, events in (
            ("contested_callback", found.contested),
            ("failed_callback", found.failed_events),
            ("unprocessed_callback", found.unclaimed_events),
        ):
            rows += [[group, e.id, e.received_at, e.status.value, e.event_key, e.error] for e in events]
        rows += [
            ["failed_refund", r.id, r.created_at, r.status.value, r.provider_receipt, r.failure_reason]
            for r in found.failed_refunds
        ]
        return csv_response(
            _filename("payment-anomalies", page), ["group", "id", "at", "status", "key", "detail"], rows
        )
    return await page.render("admin/money/anomalies.html", {"a": found})


# Ledger -----------------------------------------------------------------------------------


def _end_of_day(text: str) -> datetime | None:
    """The last instant of a Nairobi date (balances as of that day, inclusive)."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FormInvalid({"at": f"{text!r} is not a date (YYYY-MM-DD)"}) from None
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=NAIROBI) - timedelta(microseconds=1)


@routes.get("/admin/ledger", roles=ADMINS)
async def show_ledger(page: Page) -> web.StreamResponse:
    at = _end_of_day(page.q("at"))
    currency = page.q("currency", "KES") or "KES"
    chosen = page.q("institution")
    async with page.read() as session:
        schools = await console.institution_choices(session=session, actor=page.actor)
        institution_id = _uuid_or_none(chosen, "institution")
        if institution_id is None and page.actor.is_platform_admin and schools and not chosen:
            institution_id = schools[0].id
        balances = await console.ledger_balances(
            session=session, actor=page.actor, institution_id=institution_id, currency=currency, at=at
        )
    if page.wants_csv:
        return csv_response(
            _filename("ledger-balances", page),
            ["institution_id", "as_of", "code", "name", "balance_minor", "reported"],
            (
                [
                    balances.institution_id,
                    at or page.clock.now(),
                    a.code,
                    a.name,
                    a.balance_minor,
                    a.reported_minor / 100,
                ]
                for a in balances.accounts
            ),
        )
    school = next((s.name for s in schools if s.id == balances.institution_id), "")
    return await page.render("admin/money/ledger.html", {"b": balances, "schools": schools, "school": school, "at": at})


def _uuid_or_none(text: str, name: str) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise FormInvalid({name: "not an id we know"}) from None


# Suspense ---------------------------------------------------------------------------------


@routes.get("/admin/suspense", roles=ADMINS)
async def list_suspense(page: Page) -> web.StreamResponse:
    since, until = page.day_range()
    query = page.validate(_SuspenseSearch, {"q": page.q("q")})
    async with page.read() as session:
        items = await console.suspense(session=session, actor=page.actor, q=query.q, since=since, until=until)
    if page.wants_csv:
        return csv_response(
            _filename("suspense", page),
            ["payment_id", "paid", "receipt", "amount", "held", "account_typed", "payer_name", "phone", "candidates"],
            (
                [
                    i.payment.id, i.payment.paid_at, i.payment.provider_receipt, i.payment.amount_minor / 100,
                    i.held_minor / 100, i.payment.account_reference, i.payment.payer_name, i.payment.msisdn,
                    "; ".join(f"{c.display_name} ({c.account_no})" for c in i.candidates),
                ]
                for i in items
            ),
        )  # fmt: skip
    fields = [{"name": "q", "label": "Receipt, phone, account or name"}]
    return await page.render("admin/money/suspense.html", {"items": items, "fields": fields})


class _SuspenseSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    q: str = Field(default="", max_length=100)


@routes.get("/admin/suspense/{payment_id}", roles=ADMINS)
async def show_suspense(page: Page) -> web.StreamResponse:
    query = page.validate(_SuspenseSearch, {"q": page.q("q")})
    async with page.read() as session:
        item, found = await console.suspense_item(
            session=session, actor=page.actor, payment_id=page.path_uuid("payment_id"), q=query.q
        )
    return await page.render("admin/money/suspense_match.html", {"item": item, "found": found})


@routes.post("/admin/suspense/{payment_id}/match", roles=ADMINS)
async def match_suspense(page: Page) -> web.StreamResponse:
    payment_id = page.path_uuid("payment_id")
    data = {k: page.form.get(k, "") for k in ("learner_id", "order_id") if page.form.get(k, "")}
    match = page.validate(SuspenseMatch, data)
    async with page.uow() as session:
        item, _ = await console.suspense_item(session=session, actor=page.actor, payment_id=payment_id)
        before = {**item.payment.model_dump(), "held_minor": item.held_minor}
        payment = await paybill.match_suspense(
            session=session,
            actor=page.actor,
            payment_id=payment_id,
            learner_id=match.learner_id,
            order_id=match.order_id,
            clock=page.clock,
        )
        held = await paybill.suspense_balance(session, payment)
        await page.audit(
            session,
            action="payment.suspense_match",
            target_type="payment",
            target_id=payment.id,
            institution_id=payment.institution_id,
            before=before,
            after={**PaymentOut.model_validate(payment).model_dump(), "held_minor": held, "order_id": match.order_id},
        )
    page.flash(
        page._("Payment matched to the learner.") if held else page._("Payment matched and applied to the order.")
    )
    return await page.redirect("/admin/suspense" if not held else f"/admin/payments/receipts/{payment_id}")


# Refunds ----------------------------------------------------------------------------------


@routes.get("/admin/refunds", roles=ADMINS)
async def list_refunds(page: Page) -> web.StreamResponse:
    query = page.validate(console.RefundQuery, _query(page, "q", "status", "sort"))
    async with page.read() as session:
        rows, cursor = await console.list_refunds(session=session, actor=page.actor, query=query)
    if page.wants_csv:
        return csv_response(
            _filename("refunds", page),
            [
                "refund_id", "requested", "status", "amount", "currency", "receipt", "provider", "learner",
                "reason", "requested_by", "decided_by", "decided", "failure_reason",
            ],
            (
                [
                    r.id, r.created_at, r.status.value, r.amount_minor / 100, r.currency, r.provider_receipt,
                    r.provider.value, r.learner_name, r.reason, r.requested_by, r.decided_by, r.decided_at,
                    r.failure_reason,
                ]
                for r in rows
            ),
        )  # fmt: skip
    fields = [
        {"name": "q", "label": "Receipt, learner or phone"},
        {"name": "status", "label": "Status", "options": REFUND_STATUSES},
    ]
    return await page.render("admin/money/refunds.html", {"rows": rows, "next_cursor": cursor, "fields": fields})


async def _refund_snapshot(page: Page, refund_id: uuid.UUID) -> RefundOut:
    async with page.read() as session:
        return RefundOut.model_validate(
            await refunds.get_refund(session=session, actor=page.actor, refund_id=refund_id)
        )


@routes.post("/admin/refunds/{refund_id}/approve", roles=ADMINS)
async def approve_refund(page: Page) -> web.StreamResponse:
    refund_id = page.path_uuid("refund_id")
    async with page.uow() as session:
        before = RefundOut.model_validate(
            await refunds.get_refund(session=session, actor=page.actor, refund_id=refund_id)
        )
        refund = await refunds.approve_refund(session=session, actor=page.actor, refund_id=refund_id, clock=page.clock)
        after = RefundOut.model_validate(refund)
        await page.audit(
            session,
            action="refund.approve",
            target_type="refund",
            target_id=refund.id,
            institution_id=refund.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Refund approved. Send it to return the money."))
    return await page.redirect(_back(page, "/admin/refunds"))


@routes.post("/admin/refunds/{refund_id}/reject", roles=ADMINS)
async def reject_refund(page: Page) -> web.StreamResponse:
    refund_id = page.path_uuid("refund_id")
    reason = page.form.get("reason", "").strip()
    decision = page.validate(RefundDecision, {"reason": reason or None})
    async with page.uow() as session:
        before = RefundOut.model_validate(
            await refunds.get_refund(session=session, actor=page.actor, refund_id=refund_id)
        )
        refund = await refunds.reject_refund(
            session=session, actor=page.actor, refund_id=refund_id, reason=decision.reason, clock=page.clock
        )
        await page.audit(
            session,
            action="refund.reject",
            target_type="refund",
            target_id=refund.id,
            institution_id=refund.institution_id,
            before=before,
            after=RefundOut.model_validate(refund),
        )
    page.flash(page._("Refund rejected."))
    return await page.redirect(_back(page, "/admin/refunds"))


@routes.post("/admin/refunds/{refund_id}/send", roles=ADMINS)
async def send_refund(page: Page) -> web.StreamResponse:
    """``POST /refunds/{id}/send``: a full M-Pesa Reversal or Airtel refund of an approved one.
    The provider call holds no transaction, so the audit entry is its own unit of work."""
    refund_id = page.path_uuid("refund_id")
    before = await _refund_snapshot(page, refund_id)
    try:
        refund = await reversals.send_refund(
            sessions=page.app[sessionmaker_key],
            actor=page.actor,
            refund_id=refund_id,
            gateways=page.app[gateways_key],
            clock=page.clock,
        )
    except DomainError as exc:
        after = await _refund_snapshot(page, refund_id)
        if after != before:  # the provider was asked and refused: that is worth a record too
            async with page.uow() as session:
                await page.audit(
                    session,
                    action="refund.send_failed",
                    target_type="refund",
                    target_id=refund_id,
                    institution_id=before.institution_id,
                    before=before,
                    after={**after.model_dump(mode="json"), "error": exc.detail or exc.title},
                )
        raise
    async with page.uow() as session:
        await page.audit(
            session,
            action="refund.send",
            target_type="refund",
            target_id=refund.id,
            institution_id=refund.institution_id,
            before=before,
            after=RefundOut.model_validate(refund),
        )
    page.flash(page._("Refund sent to the provider."))
    return await page.redirect(_back(page, "/admin/refunds"))


def _back(page: Page, default: str) -> str:
    back = page.form.get("back", "")
    return back if back.startswith("/admin/") and not back.startswith("//") else default


# Subscriptions ----------------------------------------------------------------------------


@routes.get("/admin/subscriptions", roles=ADMINS)
async def list_subscriptions(page: Page) -> web.StreamResponse:
    query = page.validate(subscription_console.SubscriptionQuery, _query(page, "q", "status", "sort"))
    async with page.read() as session:
        rows, cursor = await subscription_console.list_subscriptions(session=session, actor=page.actor, query=query)
    if page.wants_csv:
        return csv_response(
            _filename("subscriptions", page),
            [
                "subscription_id", "learner", "account_no", "plan", "amount", "currency", "interval", "status",
                "period_start", "period_end", "grace_until", "cancelled",
            ],
            (
                [
                    s.id, s.learner_name, s.account_no, s.product_name, s.amount_minor / 100, s.currency,
                    s.interval.value, s.status.value, s.current_period_start, s.current_period_end, s.grace_until,
                    s.cancelled_at,
                ]
                for s in rows
            ),
        )  # fmt: skip
    fields = [
        {"name": "q", "label": "Learner name, phone or account"},
        {"name": "status", "label": "Status", "options": SUBSCRIPTION_STATUSES},
    ]
    return await page.render("admin/money/subscriptions.html", {"rows": rows, "next_cursor": cursor, "fields": fields})


@routes.get("/admin/subscriptions/{subscription_id}", roles=ADMINS)
async def show_subscription(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        history = await subscription_console.subscription_history(
            session=session, actor=page.actor, subscription_id=page.path_uuid("subscription_id")
        )
    return await page.render("admin/money/subscription.html", {"h": history})
