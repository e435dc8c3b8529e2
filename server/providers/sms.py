"""Outbound SMS through Africa's Talking's official ``africastalking`` SDK, behind ``SmsSender``.

Quirks handled here (``shared/reference/africastalking.md`` §5 and "Pointing the SDK at a
local simulator"):

* the SDK is synchronous (``requests``), so every call runs in ``asyncio.to_thread`` and the
  event loop keeps serving USSD hops while AT answers;
* the SDK has no option for another host: the simulator is reached through ``_baseUrl``;
* the SDK turns a refusal into ``AfricasTalkingException(body)`` and drops the HTTP status, so
  a 401 (fix the key) could not be told from a 503 (try later); the service is handed a
  transport that returns the ``requests.Response`` instead. Both private hooks are set in
  ``at_sms_service`` only, and ``tests/providers/test_sms_adapter.py`` fails if either is renamed;
* HTTP 201 says nothing about delivery: every recipient's ``statusCode`` is read, and a number
  missing from ``Recipients`` (``InvalidSenderId`` answers ``[]``) is reported as not accepted;
* a refused recipient comes back with ``"messageId": "None"`` and ``"cost": "0"``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import africastalking
import requests
from africastalking.Service import AfricasTalkingException

from lms_domain.errors import InvalidInput
from lms_domain.money import MINOR_PER_MAJOR
from lms_domain.notifications.ports import (
    SmsRecipientResult,
    SmsSendError,
    SmsSendResult,
    http_status_is_retryable,
    recipient_status_is_accepted,
    recipient_status_is_retryable,
)
from lms_domain.phones import normalize_msisdn

if TYPE_CHECKING:
    from server.settings import Settings

log = logging.getLogger("somo.providers.sms")

# (connect, read) seconds: the SDK's own default. A read timeout may mean the messages went out.
DEFAULT_TIMEOUT_S: tuple[float, float] = (3.05, 9.05)
API_VERSION_PATH = "/version1"
_PARTS = re.compile(r"Message parts:\s*(\d+)")
_COST = re.compile(r"^\s*([A-Z]{3})\s+(\d+(?:\.\d+)?)\s*$")


def _transport(
    url: str,
    method: str,
    headers: Mapping[str, str],
    data: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    callback: object = None,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT_S,
) -> requests.Response:
    """The SDK's ``_make_request``, minus the part that throws the HTTP status away."""
    if callback is not None:
        # The SDK's callback mode starts a thread of its own; we already run in one.
        raise TypeError("the Somo transport does not support the SDK's callback mode")
    return requests.request(method, url, headers=dict(headers), data=data, params=params, timeout=timeout)


def at_sms_service(username: str, api_key: str, base_url: str | None = None) -> Any:
    """An ``africastalking.SMSService`` for ``username``, at ``base_url`` when given.

    The only place that touches the SDK's private attributes (see the module docstring).
    """
    service = africastalking.SMSService(username, api_key)
    if base_url:
        # africastalking 2.0.3 builds every URL from _baseUrl, fixed in its constructor to
        # api.africastalking.com (or the sandbox host for username "sandbox"); there is no
        # public option for another host, such as the loopback simulator.
        base = base_url.rstrip("/").removesuffix(API_VERSION_PATH)
        service._baseUrl = base + API_VERSION_PATH
    # _make_request is where the SDK raises AfricasTalkingException(body) for a non-2xx answer,
    # losing the status; ours hands the whole response back so the adapter can classify it.
    service._make_request = _transport
    return service


class AfricasTalkingSms:
    """``SmsSender`` over Africa's Talking bulk SMS (``POST /version1/messaging``)."""

    def __init__(
        self,
        username: str,
        api_key: str,
        *,
        base_url: str | None = None,
        sender_id: str | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._username = username
        self._service = at_sms_service(username, api_key, base_url)
        self._sender_id = sender_id or None
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> AfricasTalkingSms:
        """The adapter the settings describe; an empty ``at_base_url`` means the loopback simulator."""
        notifications = settings.notifications
        return cls(
            notifications.at_username,
            notifications.at_api_key.get_secret_value(),
            base_url=notifications.at_base_url or settings.payments.simulator_url,
            sender_id=notifications.sms_sender_id,
        )

    @property
    def base_url(self) -> str:
        """Where requests go, ``.../version1`` included (for logs and the start-up banner)."""
        return str(self._service._baseUrl)

    async def send(self, message: str, recipients: Sequence[str], *, sender_id: str | None = None) -> SmsSendResult:
        """Send ``message`` to every distinct number; numbers that are not phone numbers are not sent.

        Each number gets a result, in request order. A number that does not normalise to E.164
        is answered ``InvalidPhoneNumber`` (``status_code`` None: AT never saw it) without I/O.
        """
        order, numbers, refused = normalise_recipients(recipients)
        if not numbers:
            return SmsSendResult(tuple(refused[key] for key in order), parts=None, summary="")
        sender = sender_id or self._sender_id
        try:
            answer = await asyncio.to_thread(
                self._service.send, message, numbers, sender_id=sender, timeout=self._timeout
            )
        except requests.ConnectionError as exc:
            raise SmsSendError(f"Africa's Talking unreachable, nothing sent: {exc}", retryable=True) from exc
        except requests.Timeout as exc:
            # Sent but unanswered: AT may have queued the messages. Still retryable: for a
            # notification a duplicate SMS (KES 0.80) is cheaper than a missed renewal reminder.
            raise SmsSendError(f"Africa's Talking did not answer in time: {exc}", retryable=True) from exc
        except requests.RequestException as exc:
            raise SmsSendError(f"Africa's Talking request failed: {exc}", retryable=True) from exc
        except AfricasTalkingException as exc:
            raise SmsSendError(f"Africa's Talking refused the request: {exc}", retryable=False) from exc
        except ValueError as exc:  # the SDK's own phone check; normalisation should have caught it
            raise SmsSendError(f"the SDK refused a recipient: {exc}", retryable=False) from exc
        sent = parse_send_answer(_payload(answer, self._username), numbers)
        accepted = sum(r.accepted for r in sent.recipients)
        log.log(
            logging.INFO if accepted == len(numbers) else logging.WARNING,
            "sms sent to %d/%d: %s",
            accepted,
            len(numbers),
            sent.summary,
            extra={"parts": sent.parts},
        )
        by_key = {r.number: r for r in sent.recipients} | refused
        return SmsSendResult(tuple(by_key[key] for key in order), parts=sent.parts, summary=sent.summary)


def normalise_recipients(recipients: Sequence[str]) -> tuple[list[str], list[str], dict[str, SmsRecipientResult]]:
    """Each entry's result key in request order (once), the E.164 numbers to send, and refusals.

    A key is the E.164 number, or the stripped entry when it is not a phone number.
    """
    order: list[str] = []
    numbers: list[str] = []
    refused: dict[str, SmsRecipientResult] = {}
    for raw in recipients:
        try:
            key = normalize_msisdn(raw)
        except InvalidInput:
            key = raw.strip()
            refused[key] = SmsRecipientResult(
                number=key,
                accepted=False,
                status="InvalidPhoneNumber",
                status_code=None,
                message_id=None,
                cost_minor=None,
                retryable=False,
            )
        else:
            if key not in numbers:  # "0700.." and "+254700.." are one phone: one SMS
                numbers.append(key)
        if key not in order:
            order.append(key)
    return order, numbers, refused


def _payload(answer: Any, username: str) -> Any:
    """The JSON of AT's answer, or the ``SmsSendError`` its HTTP status calls for."""
    if not isinstance(answer, requests.Response):
        # An SDK that ignored our transport answers a dict (JSON) or a str (anything else).
        return _json(answer) if isinstance(answer, str) else answer
    status, body = answer.status_code, answer.text
    if 200 <= status < 300:
        return _json(body)
    detail = f"Africa's Talking answered HTTP {status}: {body.strip()[:200]}"
    if status == 401:
        raise SmsSendError(f"{detail} (check the API key of username {username!r})", retryable=False)
    raise SmsSendError(detail, retryable=http_status_is_retryable(status))


def _json(body: str) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        # A 2xx we cannot read may still mean AT queued the messages: never re-send blindly.
        raise SmsSendError(f"unreadable answer from Africa's Talking: {body[:200]!r}", retryable=False) from exc


def parse_cost_minor(cost: object) -> int | None:
    """``"KES 0.8000"`` -> 80 (minor units, half up); None for another currency or for ``"0"``."""
    match = _COST.match(cost) if isinstance(cost, str) else None
    if match is None or match.group(1) != "KES":
        return None
    try:
        amount = Decimal(match.group(2)) * MINOR_PER_MAJOR["KES"]
    except InvalidOperation:
        return None
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def parse_send_answer(payload: Any, numbers: Sequence[str]) -> SmsSendResult:
    """Read AT's ``SMSMessageData`` into one result per number of ``numbers`` (E.164, as sent)."""
    data = payload.get("SMSMessageData") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise SmsSendError(f"Africa's Talking answer without SMSMessageData: {payload!r:.200}", retryable=False)
    summary = str(data.get("Message") or "")
    entries = data.get("Recipients") or []
    if not isinstance(entries, list):
        raise SmsSendError(f"Africa's Talking Recipients is not a list: {entries!r:.200}", retryable=False)
    parts_match = _PARTS.search(summary)
    echoed: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("number"), str):
            echoed.setdefault(recipient_key(entry["number"]), entry)
    results = []
    for number in numbers:
        entry = echoed.get(number)
        results.append(_recipient(entry) if entry is not None else _missing(number, summary))
    return SmsSendResult(tuple(results), parts=int(parts_match.group(1)) if parts_match else None, summary=summary)


def recipient_key(number: str) -> str:
    """How a provider's echo of a number is matched to what was sent: E.164, else as written."""
    try:
        return normalize_msisdn(number)
    except InvalidInput:
        return number.strip()


def _recipient(entry: Mapping[str, Any]) -> SmsRecipientResult:
    status_code = _int(entry.get("statusCode"))
    message_id = entry.get("messageId")
    return SmsRecipientResult(
        number=recipient_key(str(entry["number"])),
        accepted=recipient_status_is_accepted(status_code),
        status=str(entry.get("status") or ""),
        status_code=status_code,
        # AT writes the string "None" for a refused recipient.
        message_id=message_id if isinstance(message_id, str) and message_id not in ("", "None") else None,
        cost_minor=parse_cost_minor(entry.get("cost")),
        retryable=recipient_status_is_retryable(status_code),
    )


def _missing(number: str, summary: str) -> SmsRecipientResult:
    """A number AT did not list: refused as a whole request (``InvalidSenderId``), not retryable."""
    return SmsRecipientResult(
        number=number,
        accepted=False,
        status=summary or "NotListed",
        status_code=None,
        message_id=None,
        cost_minor=None,
        retryable=False,
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
