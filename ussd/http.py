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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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

MAX_FIELD = 2000  # AT's cumulative text for a long session; anything bigger is not a phone


@dataclass(frozen=True)
class PhoneChannels:
    ussd: UssdService
    sms: SmsCommands
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    background: Background
    sender: SmsSender


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
    except ValueError:
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

    @routes.post("/ussd/africastalking/events")
    async def ussd_event(request: web.Request) -> web.Response:
        form = await _form(request)
        session_id = _field(form, "sessionId").strip() if form is not None else ""
        if form is None or not session_id:
            raise InvalidInput("an end-of-session event needs a sessionId", code="ussd_event_invalid")
        channels = channels_of(request)
        fields = {
            "session_id": session_id[:128],
            "service_code": _field(form, "serviceCode")[:32],
            "phone": _field(form, "phoneNumber")[:32],
            "network_code": _field(form, "networkCode")[:16] or None,
            "status": (_field(form, "status") or "Unknown")[:32],
            "duration_ms": _int(_field(form, "durationInMillis")),
            "hops": _int(_field(form, "hopsCount")),
            "input": _field(form, "input") or None,
            "last_app_response": _field(form, "lastAppResponse") or None,
            "last_screen": await channels.ussd.last_screen(session_id),
            "error_message": _field(form, "errorMessage") or None,
            "cost": _field(form, "cost")[:32] or None,
            "occurred_at": _at_time(_field(form, "date")),
        }
        async with channels.sessions() as session, session.begin():
            stored = await record_ussd_event(session=session, fields=fields, now=channels.clock.now())
        return web.json_response({"stored": stored})

    @routes.post("/sms/africastalking/inbound")
    async def inbound_sms(request: web.Request) -> web.Response:
        form = await _form(request)
        at_id = _field(form, "id").strip() if form is not None else ""
        sender = _field(form, "from").strip() if form is not None else ""
        if form is None or not at_id or not sender:
            raise InvalidInput("an inbound SMS needs id and from", code="inbound_sms_invalid")
        channels = channels_of(request)
        fields = {
            "at_id": at_id[:128],
            "sender": sender[:32],
            "recipient": _field(form, "to")[:32],
            "text": _field(form, "text"),
            "link_id": _field(form, "linkId")[:128] or None,
            "network_code": _field(form, "networkCode")[:16] or None,
            "sent_at": _at_time(_field(form, "date")),
        }
        async with channels.sessions() as session, session.begin():
            inbound_id = await record_inbound_sms(session=session, fields=fields, now=channels.clock.now())
        if inbound_id is not None:
            channels.background.spawn(channels.sms.process(inbound_id), f"inbound-sms:{at_id}")
        return web.json_response({"stored": inbound_id is not None})

    @routes.post("/sms/africastalking/delivery")
    async def delivery_report(request: web.Request) -> web.Response:
        form = await _form(request)
        message_id = _field(form, "id").strip() if form is not None else ""
        status = _field(form, "status").strip() if form is not None else ""
        if form is None or not message_id or not status:
            raise InvalidInput("a delivery report needs id and status", code="delivery_report_invalid")
        channels = channels_of(request)
        fields = {
            "message_id": message_id[:128],
            "status": status[:32],
            "phone": _field(form, "phoneNumber")[:32] or None,
            "network_code": _field(form, "networkCode")[:16] or None,
            "failure_reason": _field(form, "failureReason")[:64] or None,
            "retry_count": _int(_field(form, "retryCount")),
        }
        async with channels.sessions() as session, session.begin():
            stored = await record_delivery_report(session=session, fields=fields, now=channels.clock.now())
        return web.json_response({"stored": stored})

    return routes
