"""Africa's Talking endpoints: the USSD hop, the end-of-session event, inbound SMS and SMS
delivery reports.

The USSD hop never answers with an error status: AT ends the session on a 4xx, and on any
body that does not start with ``CON``/``END``, so bad input gets a valid ``END`` screen.
The three notification endpoints store what AT sent and answer 200 at once (AT retries
for about ten minutes otherwise); a retry of something stored is acknowledged again and
changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiDictProxy
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import NAIROBI, Clock
from lms_domain.errors import InvalidInput
from lms_domain.i18n import Language
from lms_domain.messaging.service import record_delivery_report, record_inbound_sms, record_ussd_event
from lms_domain.notifications.ports import SmsSender
from lms_domain.phones import network_from_code, normalize_msisdn
from ussd.background import Background
from ussd.engine import UssdService, closing
from ussd.screens import Hop
from ussd.sms import SmsCommands

log = logging.getLogger("somo.ussd")

T = TypeVar("T")
MAX_FIELD = 2000  # AT's cumulative text for a long session; anything bigger is not a phone


@dataclass(frozen=True)
class PhoneChannels:
    ussd: UssdService
    sms: SmsCommands
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    background: Background
    sender: SmsSender


@dataclass(frozen=True)
class NotificationIn:
    """One AT notification: its form, and storing it in a unit of work of its own."""

    form: MultiDictProxy[Any]
    channels: PhoneChannels

    def field(self, name: str, limit: int = MAX_FIELD) -> str:
        return _field(self.form, name).strip()[:limit]

    async def store(self, record: Callable[..., Awaitable[T]], fields: dict[str, Any]) -> T:
        async with self.channels.sessions() as session, session.begin():
            return await record(session=session, fields=fields, now=self.channels.clock.now())


def _plain(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


async def _form(request: web.Request) -> MultiDictProxy[Any] | None:
    """AT's form fields, or None for a body that is not a form (JSON, garbage, too large)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    try:
        return await request.post()
    except (ValueError, web.HTTPException, UnicodeDecodeError):
        return None


def _field(form: MultiDictProxy[Any], name: str) -> str:
    value = form.get(name, "")
    return value[:MAX_FIELD] if isinstance(value, str) else ""


def parse_hop(form: MultiDictProxy[Any] | None) -> Hop | None:
    """The hop in AT's form, or None if a field AT always sends is missing or unreadable."""
    if form is None:
        return None
    session_id, phone = _field(form, "sessionId").strip(), _field(form, "phoneNumber").strip()
    if not session_id or not phone or len(session_id) > 128:
        return None
    try:
        e164 = normalize_msisdn(phone)
    except InvalidInput:
        return None
    return Hop(
        session_id=session_id,
        phone=e164,
        network=network_from_code(_field(form, "networkCode")),
        service_code=_field(form, "serviceCode").strip(),
        text=_field(form, "text").strip(),
    )


def _int(value: str) -> int | None:
    try:
        return int(float(value))
    except (ValueError, OverflowError):  # "", "abc", "nan"; "inf" overflows
        return None


def _at_time(value: str) -> datetime | None:
    """AT's ``date`` (``2025-09-29 12:00:00``, Nairobi time) as an aware datetime."""
    try:
        return datetime.strptime(value.strip()[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=NAIROBI)
    except ValueError:
        return None


def phone_routes(channels_of: Callable[[web.Request], PhoneChannels]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.post("/ussd/africastalking")
    async def ussd_hop(request: web.Request) -> web.Response:
        hop = parse_hop(await _form(request))
        if hop is None:
            return _plain(closing(Language.EN, "error.phone"))
        return _plain(await channels_of(request).ussd.handle(hop))

    async def notification(request: web.Request, required: tuple[str, ...], what: str, code: str) -> NotificationIn:
        """AT's form for a notification endpoint, refused (422) without the fields AT always sends."""
        form = await _form(request)
        if form is None or not all(_field(form, name).strip() for name in required):
            raise InvalidInput(f"{what} needs {' and '.join(required)}", code=code)
        return NotificationIn(form, channels_of(request))

    @routes.post("/ussd/africastalking/events")
    async def ussd_event(request: web.Request) -> web.Response:
        got = await notification(request, ("sessionId",), "an end-of-session event", "ussd_event_invalid")
        session_id = got.field("sessionId", 128)
        fields = {
            "session_id": session_id,
            "service_code": got.field("serviceCode", 32),
            "phone": got.field("phoneNumber", 32),
            "network_code": got.field("networkCode", 16) or None,
            "status": got.field("status", 32) or "Unknown",
            "duration_ms": _int(got.field("durationInMillis")),
            "hops": _int(got.field("hopsCount")),
            "input": got.field("input") or None,
            "last_app_response": got.field("lastAppResponse") or None,
            "last_screen": await got.channels.ussd.last_screen(session_id),
            "error_message": got.field("errorMessage") or None,
            "cost": got.field("cost", 32) or None,
            "occurred_at": _at_time(got.field("date")),
        }
        return web.json_response({"stored": await got.store(record_ussd_event, fields)})

    @routes.post("/sms/africastalking/inbound")
    async def inbound_sms(request: web.Request) -> web.Response:
        got = await notification(request, ("id", "from"), "an inbound SMS", "inbound_sms_invalid")
        fields = {
            "at_id": got.field("id", 128),
            "sender": got.field("from", 32),
            "recipient": got.field("to", 32),
            "text": got.field("text"),
            "link_id": got.field("linkId", 128) or None,
            "network_code": got.field("networkCode", 16) or None,
            "sent_at": _at_time(got.field("date")),
        }
        inbound_id = await got.store(record_inbound_sms, fields)
        if inbound_id is not None:
            got.channels.background.spawn(got.channels.sms.process(inbound_id), f"inbound-sms:{fields['at_id']}")
        return web.json_response({"stored": inbound_id is not None})

    @routes.post("/sms/africastalking/delivery")
    async def delivery_report(request: web.Request) -> web.Response:
        got = await notification(request, ("id", "status"), "a delivery report", "delivery_report_invalid")
        fields = {
            "message_id": got.field("id", 128),
            "status": got.field("status", 32),
            "phone": got.field("phoneNumber", 32) or None,
            "network_code": got.field("networkCode", 16) or None,
            "failure_reason": got.field("failureReason", 64) or None,
            "retry_count": _int(got.field("retryCount")),
        }
        return web.json_response({"stored": await got.store(record_delivery_report, fields)})

    return routes
