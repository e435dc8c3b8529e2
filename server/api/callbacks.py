"""Provider callbacks: store the raw body, acknowledge at once, settle in the background.

The order is the point. Daraja retries are undocumented and a slow or failing answer may make
it drop the callback (``shared/reference/daraja.md`` §4.5), so nothing but the inbox insert
stands between the body and the acknowledgement; settlement happens afterwards from the stored
row, in a task the app owns and drains at shutdown.

The inbox is unique on (provider, CheckoutRequestID, body hash): an exact duplicate collapses
into the existing row, and a different body for the same key (a late contradicting result) is
kept as its own row.

Malformed bodies answer 400 problem+json:

* not JSON at all: nothing is stored. It cannot be Daraja's and carries no key to file it under;
* JSON that is not a usable STK callback (no ``Body.stkCallback``, no CheckoutRequestID, a
  success without receipt or amount): the inbox row is written with status ``failed`` and the
  parse error, under the CheckoutRequestID or ``malformed:<sha256>``, and nothing else happens.

These paths live outside ``/api/v1`` and are never rate limited: a callback must always be stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import InvalidInput
from lms_domain.ids import new_id
from lms_domain.payments import flows
from lms_domain.payments.models import Provider, WebhookEvent, WebhookStatus
from lms_domain.payments.mpesa import parse_stk_callback
from server.keys import callback_tasks_key, clock_key, sessionmaker_key, settings_key
from server.problems import problem_response
from server.tasks import BackgroundTasks

routes = web.RouteTableDef()
log = logging.getLogger("somo.callbacks")

MPESA_ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}
KEPT_HEADERS = ("Content-Type", "User-Agent", "X-Forwarded-For")


def stk_callback_path(secret: str) -> str:
    return f"/callbacks/mpesa/{secret}/stk"


def _check_secret(request: web.Request) -> None:
    expected = request.app[settings_key].payments.callback_secret.get_secret_value()
    if not hmac.compare_digest(request.match_info["secret"].encode(), expected.encode()):
        raise web.HTTPNotFound()


async def _store(
    session: AsyncSession, request: web.Request, *, key: str, raw: bytes, status: WebhookStatus, error: str | None
) -> tuple[uuid.UUID, WebhookStatus]:
    """Insert the inbox row, or find the identical one already there; (id, its status)."""
    digest = hashlib.sha256(raw).hexdigest()
    now = request.app[clock_key].now()
    values: dict[str, Any] = {
        "id": new_id(),
        "provider": Provider.MPESA,
        "kind": flows.STK_CALLBACK_KIND,
        "event_key": key,
        "body_sha256": digest,
        "body": raw.decode("utf-8", errors="replace"),
        "headers": {h: request.headers[h] for h in KEPT_HEADERS if h in request.headers},
        "remote_addr": request.remote,
        "status": status,
        "error": error,
        "attempts": 0,
        "received_at": now,
        "processed_at": now if status is not WebhookStatus.RECEIVED else None,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(WebhookEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["provider", "event_key", "body_sha256"])
        .returning(WebhookEvent.id)
    )
    inserted = await session.scalar(stmt)
    if inserted is not None:
        return inserted, status
    row = (
        await session.execute(
            sa.select(WebhookEvent.id, WebhookEvent.status).where(
                WebhookEvent.provider == Provider.MPESA,
                WebhookEvent.event_key == key,
                WebhookEvent.body_sha256 == digest,
            )
        )
    ).one()
    return row.id, row.status


def _malformed(request: web.Request, detail: str) -> web.Response:
    return problem_response(
        status=400, code="mpesa_callback_malformed", title="Malformed callback", detail=detail, request=request
    )


@routes.post("/callbacks/mpesa/{secret}/stk")
async def mpesa_stk_callback(request: web.Request) -> web.Response:
    """Daraja's STK Push result. Answers ``{"ResultCode": 0, "ResultDesc": "Accepted"}``."""
    _check_secret(request)
    raw = await request.read()
    try:
        json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return _malformed(request, "the body is not JSON")
    error: str | None = None
    try:
        key = parse_stk_callback(raw).checkout_request_id
    except InvalidInput as exc:
        error = exc.detail
        try:
            key = parse_stk_callback(raw, strict=False).checkout_request_id
        except InvalidInput:
            key = "malformed:" + hashlib.sha256(raw).hexdigest()
    status = WebhookStatus.FAILED if error else WebhookStatus.RECEIVED
    async with request.app[sessionmaker_key]() as session, session.begin():
        event_id, stored_status = await _store(session, request, key=key, raw=raw, status=status, error=error)
    if error is not None:
        return _malformed(request, error)
    if stored_status is WebhookStatus.RECEIVED:
        # New, or a duplicate of a row still waiting (say, for its intent): (re)process it.
        request.app[callback_tasks_key].spawn(_settle(request.app, event_id), name=f"stk-callback-{event_id}")
    return web.json_response(MPESA_ACK)


async def _settle(app: web.Application, event_id: uuid.UUID) -> None:
    clock = app[clock_key]
    try:
        async with app[sessionmaker_key]() as session, session.begin():
            await flows.settle_from_callback(session, event_id, clock)
    except Exception as exc:
        # The row stays "received" for the poller; record why, in a unit of work of its own.
        log.exception("settling STK callback %s failed", event_id)
        async with app[sessionmaker_key]() as session, session.begin():
            await session.execute(
                sa.update(WebhookEvent)
                .where(WebhookEvent.id == event_id, WebhookEvent.status == WebhookStatus.RECEIVED)
                .values(error=f"{type(exc).__name__}: {exc}"[:2000], attempts=WebhookEvent.attempts + 1)
            )


async def callback_tasks_ctx(app: web.Application) -> AsyncIterator[None]:
    """Own the settlement tasks; on shutdown, let every one finish before the database closes."""
    tasks = BackgroundTasks()
    app[callback_tasks_key] = tasks
    yield
    await tasks.drain()
