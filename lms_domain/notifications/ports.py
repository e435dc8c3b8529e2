"""The outbound SMS port: what notification flows ask of an SMS provider.

``server.providers.sms`` implements it over Africa's Talking. The shape follows AT's answer
because AT reports success per recipient: an HTTP 201 can carry a refusal for every number
(``InvalidSenderId`` with an empty ``Recipients``), so a send is only as good as the result
for each number, and callers must look at every ``SmsRecipientResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# AT's per-recipient statusCode: 100 Processed, 101 Sent, 102 Queued all mean "we have it".
ACCEPTED_STATUS_CODES = frozenset({100, 101, 102})
# CouldNotRoute and AT's own failures clear up by themselves; every other refusal (invalid
# sender id or number, opted out, no balance) needs a person, so re-sending only costs money.
RETRYABLE_STATUS_CODES = frozenset({407, 500, 501, 502})


@dataclass(frozen=True, slots=True)
class SmsRecipientResult:
    """What the provider did with one number; ``message_id`` keys its later delivery reports."""

    number: str  # E.164 as AT echoes it
    accepted: bool  # statusCode 100/101/102
    status: str  # AT's status word, e.g. "Success", "InvalidPhoneNumber"
    status_code: int | None
    message_id: str | None
    cost_minor: int | None  # "KES 0.8000" -> 80 (minor units, rounded half up); None if not KES/unparseable
    retryable: bool  # 407, 500, 501, 502 (and transport errors); never 402/403/404/406


@dataclass(frozen=True, slots=True)
class SmsSendResult:
    """One send: a result for every requested number, in request order."""

    recipients: tuple[SmsRecipientResult, ...]
    parts: int | None  # from "Message parts: N" in SMSMessageData.Message
    summary: str  # SMSMessageData.Message verbatim (e.g. "InvalidSenderId")

    @property
    def all_accepted(self) -> bool:
        """True when every number was taken; an empty send is not a success."""
        return bool(self.recipients) and all(r.accepted for r in self.recipients)

    def retryable_numbers(self) -> list[str]:
        """The numbers worth sending again later (and only those: the rest were taken or refused)."""
        return [r.number for r in self.recipients if not r.accepted and r.retryable]


class SmsSendError(Exception):
    """The whole request failed (non-2xx, network, unparseable answer): no per-number result exists.

    ``retryable`` is False when a retry cannot help (bad credentials, a refused request) or could
    double-send (a 2xx answer we could not read may mean the messages went out).
    """

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


# Whole-request (or ACS per-recipient) HTTP answers that mean "try again later" although 4xx.
RETRYABLE_HTTP_STATUSES = frozenset({408, 429})


def http_status_is_retryable(status: int | None) -> bool:
    """Whether a provider's HTTP refusal may succeed later: 5xx, a timeout, throttling."""
    return status is not None and (status >= 500 or status in RETRYABLE_HTTP_STATUSES)


def recipient_status_is_accepted(status_code: int | None) -> bool:
    """Whether AT's per-recipient ``statusCode`` means the message was taken."""
    return status_code in ACCEPTED_STATUS_CODES


def recipient_status_is_retryable(status_code: int | None) -> bool:
    """Whether a refusal with this ``statusCode`` may succeed if sent again later."""
    return status_code in RETRYABLE_STATUS_CODES


class SmsSender(Protocol):
    """Sends one text to some numbers; a number that is not E.164 yet is normalised by the adapter."""

    async def send(self, message: str, recipients: Sequence[str], *, sender_id: str | None = None) -> SmsSendResult:
        """Send ``message``; raise ``SmsSendError`` only when nothing per-number is known."""
        ...


@dataclass(frozen=True, slots=True)
class EmailSendResult:
    """The provider took the message; ``message_id`` is its operation or message id."""

    message_id: str
    status: str  # the provider's word, e.g. ACS "Succeeded" or "Running"


class EmailSendError(Exception):
    """The message was not taken. ``retryable`` as for ``SmsSendError``: False when a retry
    cannot help (bad credentials, a refused address) or could send twice."""

    def __init__(self, detail: str, *, retryable: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retryable = retryable


class EmailSender(Protocol):
    """Sends one email (plain text, optional HTML) to some addresses."""

    async def send(self, *, to: Sequence[str], subject: str, text: str, html: str | None = None) -> EmailSendResult:
        """Send it; raise ``EmailSendError`` when it was not taken."""
        ...
