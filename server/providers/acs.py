"""Outbound SMS and email through Azure Communication Services (ACS), with the official async
SDKs (``azure.communication.sms.aio.SmsClient``, ``azure.communication.email.aio.EmailClient``),
behind ``SmsSender`` and ``EmailSender``.

Quirks handled here (read in azure-communication-sms 1.1.0, -email 1.1.0 and azure-core 1.41;
``tests/providers/test_acs_adapters.py`` fails if the first three or the retry count change):

* plain ``http://`` endpoints (the loopback simulator) need no setting: azure-core refuses
  non-TLS URLs only in its *bearer token* policy (Entra ID, ``enforce_https``); the access-key
  ``HMACCredentialsPolicy`` the SDKs use with a key signs any URL. Nothing is disabled here, and
  the simulator checks every signature;
* the SDKs' ``from_connection_string`` drop the scheme (``parse_connection_str`` returns the bare
  host) and then prepend ``https://``, so an ``endpoint=http://127.0.0.1:PORT/`` connection string
  would reach the simulator over TLS and fail. Ours parses the string itself and keeps the scheme;
* ``SmsClient`` signs the endpoint's host *as given*, trailing ``/`` included, while the request
  carries ``Host: host`` without it: ``https://x.communication.azure.com/`` (the portal's form)
  gets 401 from ACS. ``EmailClient`` strips the slash itself; we strip it for both;
* ``SmsClient.send`` forwards its ``**kwargs`` into the request model as well as the pipeline, so
  per-call transport options are not passed there: timeouts (``connection_timeout``,
  ``read_timeout``) and ``retry_total`` are set on the client, and every call also runs under an
  ``asyncio.timeout`` so a slow answer cannot hold a job worker;
* azure-core's default retry policy retries 10 times with exponential back-off up to 120 s and
  honours ``Retry-After``; here ``retry_total`` is 0: Somo's jobs retry on their own schedule
  (``retryable``), and one call stays bounded by ``timeout_s``;
* HTTP 202 says nothing about a recipient: each ``SmsSendResult`` item (``successful``,
  ``http_status_code``, ``error_message``) is read; 429 and 5xx per recipient are retryable;
* the SMS SDK gives every recipient a fresh ``repeatabilityRequestId``, so ACS would drop an
  in-pipeline retry of the same request, but a new ``send`` is a new request: a retried send
  after a timeout may text twice (as with Africa's Talking, cheaper than a missed reminder);
* an email is accepted once ACS answers 202 (the operation exists, ACS will try to deliver it).
  The adapter then waits at most ``settle_s`` (default 2 s) for the operation to end: the poller
  asks at once, so a failure ACS already knows (suppressed or rejected recipients) is reported,
  as not retryable, while the caller still has the context; waiting for ``Succeeded`` for as long
  as the poller likes (30 s between polls by default, or ACS's ``Retry-After``) would hold a job
  worker for minutes, for a delivery ACS does not promise anyway. Still running then:
  ``status="Running"``. Errors *after* the 202 (a poll that fails) are logged, never raised:
  raising a retryable error there would send the email twice. Each send carries its own
  ``Operation-Id``, which becomes the result's ``message_id``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Self

from azure.communication.email.aio import EmailClient
from azure.communication.sms.aio import SmsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError

from lms_domain.notifications.gsm import sms_segments
from lms_domain.notifications.ports import (
    EmailSendError,
    EmailSendResult,
    SmsRecipientResult,
    SmsSendError,
    SmsSendResult,
    http_status_is_retryable,
)
from server.providers.sms import normalise_recipients, recipient_key

log = logging.getLogger("somo.providers.acs")

DEFAULT_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 3.05
DEFAULT_SETTLE_S = 2.0
DEFAULT_POLL_INTERVAL_S = 0.5


def parse_connection_string(conn_str: str) -> tuple[str, str]:
    """``endpoint=https://x.communication.azure.com/;accesskey=KEY`` -> (endpoint, access key).

    Unlike the SDKs' parser this keeps the scheme, so ``http://`` (the simulator) stays http.
    """
    fields: dict[str, str] = {}
    for element in conn_str.split(";"):
        # Base64 keys end in "=": split on the first "=" only.
        name, sep, value = element.strip().partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    endpoint, access_key = fields.get("endpoint"), fields.get("accesskey")
    if not endpoint or not access_key:
        raise ValueError("an ACS connection string reads endpoint=https://<resource>/;accesskey=<key>")
    return endpoint, access_key


def normalise_endpoint(endpoint: str) -> str:
    """``https://host/`` -> ``https://host``; a bare host gets ``https://`` (as the SDKs do)."""
    text = endpoint.strip()
    if not text.lower().startswith(("http://", "https://")):
        text = "https://" + text
    # SmsClient would sign "host/" while sending "Host: host": ACS answers 401.
    return text.rstrip("/")


def _check_key(access_key: str) -> str:
    # The SDKs decode the key only while signing, where a bad key escapes as binascii.Error.
    try:
        base64.b64decode(access_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the ACS access key must be base64, as in the resource's connection string") from exc
    return access_key


def _describe(exc: HttpResponseError) -> str:
    """``HTTP 401 Denied: <message>`` from ACS's ``{"error": {"code", "message"}}``, or the SDK's text."""
    code = getattr(exc.error, "code", None) if exc.error is not None else None
    message = getattr(exc.error, "message", None) if exc.error is not None else None
    if code or message:
        return f"HTTP {exc.status_code} {code}: {message}"
    return f"HTTP {exc.status_code}: {exc.message}"


class _AcsSender:
    """What the SMS and the email sender share: the resource, a client per call (it owns an
    aiohttp session, so the adapter has no lifetime to manage; a send is a few per minute at
    most), no SDK retries (the notifier decides when to try again), and one error mapping."""

    client_class: ClassVar[Any]

    def __init__(self, endpoint: str, access_key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.endpoint = normalise_endpoint(endpoint)
        self._access_key = _check_key(access_key)
        self._timeout_s = timeout_s

    @classmethod
    def from_connection_string(cls, conn_str: str, *args: Any, **options: Any) -> Self:
        """The adapter for an ACS connection string (scheme kept, see the module docstring)."""
        endpoint, access_key = parse_connection_string(conn_str)
        return cls(endpoint, access_key, *args, **options)

    def _client(self) -> Any:
        return self.client_class(
            self.endpoint,
            AzureKeyCredential(self._access_key),
            connection_timeout=CONNECT_TIMEOUT_S,
            read_timeout=self._timeout_s,
            retry_total=0,
        )

    @contextlib.contextmanager
    def _answered(self, error: type[SmsSendError | EmailSendError], what: str) -> Iterator[None]:
        """Turn whatever the SDK raises before an answer into ``error``, retryable or not."""
        try:
            yield
        except HttpResponseError as exc:
            # Includes ClientAuthenticationError (401) and DecodeError (a 2xx we could not read,
            # status 202: not retryable, the messages may have gone out).
            raise error(
                f"ACS refused the {what}: {_describe(exc)}", retryable=http_status_is_retryable(exc.status_code)
            ) from exc
        except ServiceRequestError as exc:
            raise error(f"ACS unreachable, nothing sent: {exc.message}", retryable=True) from exc
        except TimeoutError as exc:
            raise error(f"ACS did not answer within {self._timeout_s} s", retryable=True) from exc
        except AzureError as exc:  # a broken answer, or anything else the pipeline raises
            raise error(f"ACS did not answer properly: {exc.message}", retryable=True) from exc


class AcsSms(_AcsSender):
    """``SmsSender`` over ACS SMS (``POST /sms``), with delivery reports enabled."""

    client_class = SmsClient

    def __init__(
        self, endpoint: str, access_key: str, from_number: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        super().__init__(endpoint, access_key, timeout_s=timeout_s)
        self._from_number = from_number

    async def send(self, message: str, recipients: Sequence[str], *, sender_id: str | None = None) -> SmsSendResult:
        """Send ``message`` to every distinct number; numbers that are not phone numbers are not sent.

        Each number gets a result, in request order. A number that does not normalise to E.164
        is answered ``InvalidPhoneNumber`` (``status_code`` None: ACS never saw it) without I/O.
        """
        order, numbers, refused = normalise_recipients(recipients)
        if not numbers:
            return SmsSendResult(tuple(refused[key] for key in order), parts=None, summary="")
        parts = sms_segments(message).parts
        with self._answered(SmsSendError, "SMS request"):
            async with asyncio.timeout(self._timeout_s), self._client() as client:
                items = await client.send(
                    from_=sender_id or self._from_number,
                    to=numbers,
                    message=message,
                    enable_delivery_report=True,
                )
        sent = {recipient_key(item.to): _recipient(item) for item in items}
        results = {number: sent.get(number) or _missing(number) for number in numbers}
        accepted = sum(result.accepted for result in results.values())
        summary = f"Sent to {accepted}/{len(numbers)}"
        log.log(
            logging.INFO if accepted == len(numbers) else logging.WARNING,
            "acs sms sent to %d/%d",
            accepted,
            len(numbers),
            extra={"parts": parts},
        )
        by_key = results | refused
        return SmsSendResult(tuple(by_key[key] for key in order), parts=parts, summary=summary)


def _recipient(item: Any) -> SmsRecipientResult:
    """One ``azure.communication.sms.SmsSendResult`` as the port's result."""
    status_code = item.http_status_code if isinstance(item.http_status_code, int) else None
    successful = bool(item.successful)
    return SmsRecipientResult(
        number=recipient_key(item.to),
        accepted=successful,
        status="Success" if successful else str(item.error_message or f"HTTP {status_code}"),
        status_code=status_code,
        message_id=(item.message_id or None) if successful else None,
        cost_minor=None,  # ACS bills by the month and part; the answer carries no price
        retryable=not successful and http_status_is_retryable(status_code),  # never a 400 (a bad number)
    )


def _missing(number: str) -> SmsRecipientResult:
    """A number ACS did not list: no answer means not taken; not retryable (it may have gone)."""
    return SmsRecipientResult(
        number=number,
        accepted=False,
        status="NotListed",
        status_code=None,
        message_id=None,
        cost_minor=None,
        retryable=False,
    )


class AcsEmail(_AcsSender):
    """``EmailSender`` over ACS Email (``POST /emails:send``, then the operation's status)."""

    client_class = EmailClient

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        sender_address: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        settle_s: float = DEFAULT_SETTLE_S,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        super().__init__(endpoint, access_key, timeout_s=timeout_s)
        self._sender_address = sender_address
        self._settle_s = settle_s
        self._poll_interval_s = poll_interval_s

    async def send(self, *, to: Sequence[str], subject: str, text: str, html: str | None = None) -> EmailSendResult:
        """Queue the email; ``status`` is ``Succeeded`` if ACS finished within ``settle_s``, else ``Running``."""
        addresses = list(dict.fromkeys(address.strip() for address in to if address.strip()))
        if not addresses:
            raise EmailSendError("no recipient address", retryable=False)
        content: dict[str, str] = {"subject": subject, "plainText": text}
        if html:
            content["html"] = html
        message = {
            "senderAddress": self._sender_address,
            "recipients": {"to": [{"address": address} for address in addresses]},
            "content": content,
            # Open and click tracking rewrites links; nothing in Somo reads it.
            "userEngagementTrackingDisabled": True,
        }
        operation_id = str(uuid.uuid4())
        async with self._client() as client:
            with self._answered(EmailSendError, "email"):
                async with asyncio.timeout(self._timeout_s):
                    poller = await client.begin_send(
                        message, operation_id=operation_id, polling_interval=self._poll_interval_s
                    )
            # ACS has the email (202): from here on nothing may ask for a retry.
            return await self._settle(poller, operation_id)

    async def _settle(self, poller: Any, operation_id: str) -> EmailSendResult:
        """Wait up to ``settle_s`` for the operation to end; a failure ACS reports is raised."""
        if self._settle_s <= 0:
            return EmailSendResult(operation_id, "Running")
        try:
            async with asyncio.timeout(self._settle_s):
                final = await poller.result()
        except TimeoutError:
            return EmailSendResult(operation_id, "Running")
        except HttpResponseError as exc:
            failure = _operation_failure(exc)
            if failure is not None:
                raise EmailSendError(f"ACS did not send email {operation_id}: {failure}", retryable=False) from exc
            log.warning("acs email %s accepted, status unknown: %s", operation_id, _describe(exc))
            return EmailSendResult(operation_id, "Running")
        except AzureError as exc:
            log.warning("acs email %s accepted, status unknown: %s", operation_id, exc.message)
            return EmailSendResult(operation_id, "Running")
        body = final if isinstance(final, dict) else {}
        return EmailSendResult(str(body.get("id") or operation_id), str(body.get("status") or "Succeeded"))


def _operation_failure(exc: HttpResponseError) -> str | None:
    """``code: message`` when the poll answered an operation that ended Failed or Canceled."""
    response = exc.response
    if response is None or response.status_code != 200:
        return None
    try:
        body = json.loads(response.text())
    except ValueError:
        return None
    if not isinstance(body, dict) or str(body.get("status", "")).lower() not in ("failed", "canceled"):
        return None
    error = body.get("error")
    if not isinstance(error, dict):
        error = {}
    return f"{body['status']} {error.get('code') or ''}: {error.get('message') or ''}".strip()
