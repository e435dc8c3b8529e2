"""Idempotency keys with Stripe's semantics, for POSTs that create orders, payments,
enrollments or refunds.

- Same key, same request: the stored response is replayed with ``Idempotent-Replayed: true``.
- Same key, different request: 409. A request still running with the key: 409.
- Failures (validation or domain errors, crashes) are not stored: the key is released, so
  a corrected retry runs.
- The business write and the stored response commit in one transaction, so a crash can
  never leave an order without its stored response (which would let a retry create a
  second one). A claim left ``in_progress`` by a crash has committed nothing and may be
  taken over after ``ABANDONED_AFTER``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import IntegrityError

from lms_domain.errors import Conflict, InvalidInput
from lms_domain.ids import new_id
from lms_domain.platform.models import IdempotencyKey, IdempotencyState
from server.keys import sessionmaker_key

if TYPE_CHECKING:
    from server.api.registry import Call, Operation

HEADER = "Idempotency-Key"
KEEP_FOR = timedelta(hours=24)
ABANDONED_AFTER = timedelta(minutes=2)
REPLAYED_HEADERS = ("Content-Type", "Location")
# Printable ASCII, no surrounding spaces (HTTP strips them); documented in the OpenAPI document.
KEY_PATTERN_TEXT = r"^[!-~](?:[ -~]{0,253}[!-~])?$"
KEY_PATTERN = re.compile(KEY_PATTERN_TEXT)


def _request_hash(call: Call[Any, Any]) -> str:
    """Hash of what the request means, not how it was spelled: the validated body in a
    canonical form, so re-serialised JSON with the same parameters replays."""
    digest = hashlib.sha256()
    digest.update(call.request.method.encode())
    digest.update(b"\0" + call.request.path.encode() + b"\0")
    digest.update(call.body.model_dump_json(round_trip=True).encode())
    return digest.hexdigest()


def _replay(row: IdempotencyKey) -> web.Response:
    headers = {k: v for k, v in (row.response_headers or {}).items() if k != "Content-Type"}
    headers["Idempotent-Replayed"] = "true"
    return web.Response(
        status=row.response_status or 200,
        text=row.response_body or "",
        content_type=(row.response_headers or {}).get("Content-Type", "application/json"),
        headers=headers,
    )


async def _claim(call: Call[Any, Any], scope: str, key: str, request_hash: str) -> IdempotencyKey | web.Response:
    """Insert an in-progress claim, or answer from the existing one."""
    now = call.clock.now()
    makers = call.app[sessionmaker_key]
    for _ in range(2):  # a second pass after losing an insert race
        async with makers() as session, session.begin():
            existing = await session.scalar(
                sa.select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            )
            if existing is not None:
                stale = existing.state is IdempotencyState.IN_PROGRESS and existing.created_at <= now - ABANDONED_AFTER
                if existing.expires_at <= now or stale:
                    await session.delete(existing)
                    await session.flush()
                    existing = None
            if existing is not None:
                if existing.request_sha256 != request_hash:
                    raise Conflict(
                        "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
                    )
                if existing.state is IdempotencyState.IN_PROGRESS:
                    raise Conflict(
                        "a request with this Idempotency-Key is still in progress",
                        code="idempotency_in_progress",
                        retry_after_s=1,
                    )
                return _replay(existing)
            claim = IdempotencyKey(
                id=new_id(),
                scope=scope,
                key=key,
                request_sha256=request_hash,
                created_at=now,
                expires_at=now + KEEP_FOR,
            )
            session.add(claim)
            try:
                await session.flush()
            except IntegrityError:
                continue
            return claim
    raise Conflict("a request with this Idempotency-Key is still in progress", code="idempotency_in_progress")


async def _release(call: Call[Any, Any], claim_id: Any) -> None:
    async with call.app[sessionmaker_key]() as session, session.begin():
        await session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.id == claim_id))


async def run_idempotent(
    call: Call[Any, Any], operation: Operation, run: Callable[[], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    key = call.request.headers.get(HEADER)
    if key is None:
        return await run()
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(f"{HEADER} must be 1-255 printable ASCII characters", code="invalid_idempotency_key")
    scope = f"{call.actor.user_id}:{operation.operation_id}"
    outcome = await _claim(call, scope, key, _request_hash(call))
    if isinstance(outcome, web.StreamResponse):
        return outcome
    claim_id = outcome.id
    try:
        async with call.app[sessionmaker_key]() as session, session.begin():
            call.shared_session = session
            response = await run()
            if not 200 <= response.status < 300 or not isinstance(response, web.Response):
                raise _NotStored(response)
            stored = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
            await session.execute(
                sa.update(IdempotencyKey)
                .where(IdempotencyKey.id == claim_id)
                .values(
                    state=IdempotencyState.COMPLETED,
                    response_status=response.status,
                    response_body=response.text,
                    response_headers=stored,
                )
            )
    except _NotStored as not_stored:
        await _release(call, claim_id)
        return not_stored.response
    except BaseException:
        await _release(call, claim_id)
        raise
    finally:
        call.shared_session = None
    return response


class _NotStored(Exception):
    """A non-2xx response: roll the unit of work back, release the key, still answer."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response
