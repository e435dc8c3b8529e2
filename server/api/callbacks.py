"""Provider callbacks: store the raw body, acknowledge at once, process in the background.

The order is the point. Daraja retries are undocumented and a slow or failing answer may make
it drop the callback (``shared/reference/daraja.md`` §4.5), so nothing but the inbox insert
stands between the body and the acknowledgement; processing happens afterwards from the
stored row, in a task the app owns and drains at shutdown.

The inbox is unique on (provider, event key, body hash), the key being the CheckoutRequestID
(STK), TransID (paybill), ConversationID (Transaction Status, Reversal) or our Airtel
transaction id: an exact duplicate collapses into the existing row, and a different body for
the same key (a late contradicting result) is kept as its own row.

Endpoints, all under an unguessable secret path segment (a wrong one is 404, nothing stored):

* ``/callbacks/mpesa/<secret>/stk``: STK Push results;
* ``/callbacks/paybill/<secret>/validation`` and ``/confirmation``: C2B. Not under ``mpesa``,
  because Daraja refuses C2B URLs containing that word (§7.1). Validation answers at once from
  the learner accounts; confirmation is stored then applied;
* ``/callbacks/mpesa/<secret>/result`` and ``/timeout``: Transaction Status and Reversal;
* ``/callbacks/airtel/<secret>``: Airtel's payment callback, which only triggers an enquiry.
  Its ``hash`` is checked (log-only by default); a mismatch still answers 200 and alerts.

Malformed bodies answer 400 problem+json: not JSON at all stores nothing (it carries no key to
file it under); JSON that is not a usable callback is stored as ``failed`` with the parse
error, under its key or ``malformed:<sha256>``, and nothing else happens.

A configurable allow-list of source networks applies to every callback, in ``log_only`` or
``enforce`` mode (403 before anything is stored). These paths live outside ``/api/v1`` and are
never rate limited: a callback must always be stored.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.db import insert_once
from lms_domain.errors import InvalidInput
from lms_domain.ids import new_id
from lms_domain.payments import flows, paybill, reversals
from lms_domain.payments.airtel import match_callback_hash, parse_airtel_callback
from lms_domain.payments.models import Provider, WebhookEvent, WebhookStatus
from lms_domain.payments.mpesa import parse_async_result, parse_c2b_payload, parse_stk_callback
from server.inbox_workers import InboxWorkers
from server.keys import (
    callback_tasks_key,
    clock_key,
    gateways_key,
    read_sessionmaker_key,
    sessionmaker_key,
    settings_key,
)
from server.problems import problem_response

routes = web.RouteTableDef()
log = logging.getLogger("somo.callbacks")

MPESA_ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
C2B_CONFIRMATION_ACK = {"ResultCode": 0, "ResultDesc": "Success"}
AIRTEL_ACK = {"status": "received"}
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Forwarded-For")
TIMEOUT_KIND = "mpesa_timeout"

Processor = Callable[[web.Application, uuid.UUID], None]


def stk_callback_path(secret: str) -> str:
    return f"/callbacks/mpesa/{secret}/stk"


def _check_secret(request: web.Request) -> None:
    expected = request.app[settings_key].payments.callback_secret.get_secret_value()
    if not hmac.compare_digest(request.match_info["secret"].encode(), expected.encode()):
        raise web.HTTPNotFound()


def _source_allowed(request: web.Request) -> bool:
    payments = request.app[settings_key].payments
    if payments.callback_allowlist_mode == "off" or not payments.callback_allowlist:
        return True
    try:
        address = ipaddress.ip_address(request.remote or "")
    except ValueError:
        address = None
    allowed = address is not None and any(
        address in ipaddress.ip_network(network, strict=False) for network in payments.callback_allowlist
    )
    if not allowed:
        log.warning(
            "callback from a source outside the allow-list",
            extra={"remote": request.remote, "path": request.path, "mode": payments.callback_allowlist_mode},
        )
    return allowed or payments.callback_allowlist_mode == "log_only"


def _guard(request: web.Request) -> web.Response | None:
    """404 for a wrong secret, 403 for a refused source; ``None`` when the callback may proceed."""
    _check_secret(request)
    if not _source_allowed(request):
        return problem_response(
            status=403,
            code="callback_source_refused",
            title="Source not allowed",
            detail="this address may not deliver provider callbacks",
            request=request,
        )
    return None


async def store_event(
    session: AsyncSession,
    *,
    provider: Provider,
    kind: str,
    key: str,
    raw: bytes,
    status: WebhookStatus,
    error: str | None,
    clock: Clock,
    headers: dict[str, str] | None = None,
    remote: str | None = None,
) -> tuple[uuid.UUID, WebhookStatus]:
    """Insert the inbox row, or find the identical one already there; (id, its status)."""
    digest = hashlib.sha256(raw).hexdigest()
    now = clock.now()
    values: dict[str, Any] = {
        "id": new_id(),
        "provider": provider,
        "kind": kind,
        "event_key": key[:128],
        "body_sha256": digest,
        "body": raw.decode("utf-8", errors="replace"),
        "headers": headers or {},
        "remote_addr": remote,
        "status": status,
        "error": error,
        "attempts": 0,
        "received_at": now,
        "processed_at": now if status is not WebhookStatus.RECEIVED else None,
    }
    inserted = await insert_once(session, WebhookEvent, values, unique=["provider", "event_key", "body_sha256"])
    if inserted is not None:
        return inserted, status
    row = (
        await session.execute(
            sa.select(WebhookEvent.id, WebhookEvent.status).where(
                WebhookEvent.provider == provider,
                WebhookEvent.event_key == key[:128],
                WebhookEvent.body_sha256 == digest,
            )
        )
    ).one()
    return row.id, row.status


async def _inbox(
    request: web.Request,
    *,
    provider: Provider,
    kind: str,
    raw: bytes,
    key: str,
    error: str | None,
    processor: Processor | None,
    note: dict[str, str] | None = None,
) -> WebhookStatus:
    """Store one callback and, when it is (still) waiting, schedule its processing."""
    status = WebhookStatus.FAILED if error else (WebhookStatus.RECEIVED if processor else WebhookStatus.PROCESSED)
    headers = {h: request.headers[h] for h in KEPT_HEADERS if h in request.headers}
    headers.update(note or {})
    async with request.app[sessionmaker_key]() as session, session.begin():
        event_id, stored = await store_event(
            session,
            provider=provider,
            kind=kind,
            key=key,
            raw=raw,
            status=status,
            error=error,
            clock=request.app[clock_key],
            headers=headers,
            remote=request.remote,
        )
    if stored is WebhookStatus.RECEIVED and processor is not None:
        # New, or a duplicate of a row still waiting (say, for its intent): (re)process it.
        processor(request.app, event_id)
    return stored


def _malformed_key(raw: bytes) -> str:
    return "malformed:" + hashlib.sha256(raw).hexdigest()


def _malformed(request: web.Request, detail: str, code: str = "callback_malformed") -> web.Response:
    return problem_response(status=400, code=code, title="Malformed callback", detail=detail, request=request)


def _settle_stk(app: web.Application, event_id: uuid.UUID) -> None:
    app[callback_tasks_key].submit_tx(flows.settle_from_callback, event_id)


def _record_paybill(app: web.Application, event_id: uuid.UUID) -> None:
    app[callback_tasks_key].submit_tx(paybill.record_confirmation, event_id)


def _apply_result(app: web.Application, event_id: uuid.UUID) -> None:
    app[callback_tasks_key].submit_tx(reversals.apply_reversal_result, event_id)


def _enquire_airtel(app: web.Application, event_id: uuid.UUID) -> None:
    async def work(event_id: uuid.UUID) -> None:
        await flows.process_airtel_callback(
            sessions=app[sessionmaker_key], event_id=event_id, gateways=app[gateways_key], clock=app[clock_key]
        )

    app[callback_tasks_key].submit(work, event_id)


def _stk_key(raw: bytes) -> str:
    return parse_stk_callback(raw).checkout_request_id


def _stk_fallback_key(raw: bytes) -> str:
    # A success without receipt or amount still names its CheckoutRequestID: file it there.
    try:
        return parse_stk_callback(raw, strict=False).checkout_request_id
    except InvalidInput:
        return _malformed_key(raw)


@dataclass(frozen=True, slots=True)
class _Callback:
    """One kind of provider callback: how to key it in the inbox, who processes it, the answer."""

    provider: Provider
    kind: str
    key: Callable[[bytes], str]  # raises InvalidInput; a "*_not_json" code means nothing is stored
    processor: Processor | None
    ack: dict[str, Any]
    malformed_code: str
    fallback_key: Callable[[bytes], str] = _malformed_key


STK = _Callback(
    Provider.MPESA,
    flows.STK_CALLBACK_KIND,
    _stk_key,
    _settle_stk,
    MPESA_ACK,
    "mpesa_callback_malformed",
    fallback_key=_stk_fallback_key,
)
C2B_CONFIRMATION = _Callback(
    Provider.MPESA,
    paybill.CONFIRMATION_KIND,
    lambda raw: parse_c2b_payload(raw).trans_id,
    _record_paybill,
    C2B_CONFIRMATION_ACK,
    "mpesa_c2b_malformed",
)
ORG_RESULT = _Callback(
    Provider.MPESA,
    reversals.RESULT_KIND,
    lambda raw: parse_async_result(raw).conversation_id,
    _apply_result,
    MPESA_ACK,
    "mpesa_result_malformed",
)
AIRTEL = _Callback(
    Provider.AIRTEL,
    flows.AIRTEL_CALLBACK_KIND,
    lambda raw: parse_airtel_callback(raw).transaction_id,
    _enquire_airtel,
    AIRTEL_ACK,
    "airtel_callback_malformed",
)


async def _receive(
    request: web.Request, callback: _Callback, raw: bytes, *, note: dict[str, str] | None = None
) -> web.Response:
    """Parse once for the inbox key, store, acknowledge; a body that is not JSON stores nothing."""
    error: str | None = None
    try:
        key = callback.key(raw)
    except InvalidInput as exc:
        if exc.code.endswith("_not_json"):
            return _malformed(request, exc.detail, callback.malformed_code)
        error, key = exc.detail, callback.fallback_key(raw)
    await _inbox(
        request,
        provider=callback.provider,
        kind=callback.kind,
        raw=raw,
        key=key,
        error=error,
        processor=callback.processor,
        note=note,
    )
    if error is not None:
        return _malformed(request, error, callback.malformed_code)
    return web.json_response(callback.ack)


@routes.post("/callbacks/mpesa/{secret}/stk")
async def mpesa_stk_callback(request: web.Request) -> web.Response:
    """Daraja's STK Push result. Answers ``{"ResultCode": 0, "ResultDesc": "Accepted"}``."""
    if (refused := _guard(request)) is not None:
        return refused
    return await _receive(request, STK, await request.read())


@routes.post("/callbacks/paybill/{secret}/validation")
async def paybill_validation(request: web.Request) -> web.Response:
    """Accept or reject a paybill payment before the customer's money moves (§7.4)."""
    if (refused := _guard(request)) is not None:
        return refused
    raw = await request.read()
    try:
        payment = parse_c2b_payload(raw)
    except InvalidInput as exc:
        if not exc.code.endswith("_not_json"):
            await _inbox(
                request,
                provider=Provider.MPESA,
                kind=paybill.VALIDATION_KIND,
                raw=raw,
                key=_malformed_key(raw),
                error=exc.detail,
                processor=None,
            )
        return _malformed(request, exc.detail, "mpesa_c2b_malformed")
    async with request.app[read_sessionmaker_key]() as session:
        decision = await paybill.validate_paybill(session, payment)
    await _inbox(
        request,
        provider=Provider.MPESA,
        kind=paybill.VALIDATION_KIND,
        raw=raw,
        key=payment.trans_id,
        error=None if decision.accepted else f"rejected {decision.result_code}",
        processor=None,
    )
    return web.json_response({"ResultCode": decision.result_code, "ResultDesc": decision.result_desc})


@routes.post("/callbacks/paybill/{secret}/confirmation")
async def paybill_confirmation(request: web.Request) -> web.Response:
    """A completed paybill payment: stored, acknowledged, then applied or held in suspense."""
    if (refused := _guard(request)) is not None:
        return refused
    return await _receive(request, C2B_CONFIRMATION, await request.read())


@routes.post("/callbacks/mpesa/{secret}/result")
async def mpesa_result(request: web.Request) -> web.Response:
    """A Transaction Status or Reversal result (§8, §9)."""
    if (refused := _guard(request)) is not None:
        return refused
    return await _receive(request, ORG_RESULT, await request.read())


@routes.post("/callbacks/mpesa/{secret}/timeout")
async def mpesa_timeout(request: web.Request) -> web.Response:
    """A queue timeout. Its shape is undocumented (§8), so it is kept whole for a person to read."""
    if (refused := _guard(request)) is not None:
        return refused
    raw = await request.read()
    try:
        key = parse_async_result(raw).conversation_id
    except InvalidInput:
        key = _malformed_key(raw)
    await _inbox(request, provider=Provider.MPESA, kind=TIMEOUT_KIND, raw=raw, key=key, error=None, processor=None)
    return web.json_response(MPESA_ACK)


@routes.post("/callbacks/airtel/{secret}")
async def airtel_callback(request: web.Request) -> web.Response:
    """Airtel's payment callback: stored, answered 200, then an enquiry decides (§4.3)."""
    if (refused := _guard(request)) is not None:
        return refused
    raw = await request.read()
    payments = request.app[settings_key].payments
    matched = match_callback_hash(raw, payments.airtel_callback_hash_secret.get_secret_value())
    if matched is None:
        # Never fatal: the enquiry, not the hash, decides whether money moved.
        level = logging.ERROR if payments.airtel_hash_mode == "enforce" else logging.WARNING
        log.log(level, "Airtel callback hash missing or not matching", extra={"path": "/callbacks/airtel"})
    return await _receive(
        request, AIRTEL, raw, note={"X-Somo-Hash": matched.value if matched is not None else "mismatch"}
    )


async def callback_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the inbox workers; on shutdown, let them finish before the database closes."""
    payments = app[settings_key].payments
    workers = InboxWorkers(
        app[sessionmaker_key], app[clock_key], workers=payments.settle_workers, batch=payments.settle_batch
    )
    app[callback_tasks_key] = workers
    yield
    await workers.stop()
