"""The M-Pesa gateway port: what the payment flows ask of a mobile-money provider.

The domain owns these types; ``server.providers.daraja`` implements them over HTTP. Secrets
(consumer key and secret, passkey) and the shortcode live in the adapter, never in a request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.errors import DomainError
from lms_domain.money import Money
from lms_domain.payments.models import FailureClass

if TYPE_CHECKING:
    from lms_domain.payments.airtel import AirtelGateway


@dataclass(frozen=True, slots=True)
class StkPushRequest:
    """One prompt to send: whole-shilling KES ``amount`` to be paid from ``msisdn`` (any local format)."""

    amount: Money
    msisdn: str
    account_reference: str
    description: str
    callback_url: str


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    """The provider queued the prompt; this is *not* a payment. Persist ``checkout_request_id`` at once."""

    merchant_request_id: str
    checkout_request_id: str
    customer_message: str


class StkStatus(StrEnum):
    PENDING = "pending"  # the customer has not answered yet: poll again later
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    """What STK Query knows. ``result_code`` is always a string (Daraja sends int or string)."""

    status: StkStatus
    result_code: str | None = None
    result_desc: str = ""
    failure_class: FailureClass | None = None


class PaymentGatewayError(DomainError):
    """The provider refused or could not be reached; ``failure_class`` says who must act."""

    code = "payment_gateway_error"
    title = "Payment provider error"
    failure_class = FailureClass.TRANSIENT

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        failure_class: FailureClass | None = None,
        provider_code: str | None = None,
        retry_after_s: float | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, code=code, **extra)
        if failure_class is not None:
            self.failure_class = failure_class
        self.provider_code = provider_code
        self.retry_after_s = retry_after_s


class GatewayConfigurationError(PaymentGatewayError):
    """Our credentials, shortcode or request shape are wrong: page an admin, not the learner."""

    code = "payment_gateway_misconfigured"
    failure_class = FailureClass.CONFIGURATION


class GatewayUnavailable(PaymentGatewayError):
    """The provider is busy, rate limiting or unreachable; try again after ``retry_after_s`` or backoff.

    With ``outcome_unknown`` set the request may have been processed: reconcile before re-pushing.
    """

    code = "payment_gateway_unavailable"
    failure_class = FailureClass.TRANSIENT

    @property
    def outcome_unknown(self) -> bool:
        return bool(self.extra.get("outcome_unknown", False))


class MpesaGateway(Protocol):
    """Lipa na M-Pesa Online (STK Push) as the payment flows need it."""

    async def stk_push(self, request: StkPushRequest) -> StkPushAccepted:
        """Send the prompt; raise ``InvalidInput`` before any I/O for a request Daraja would refuse."""
        ...

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """Ask for the state of a push; "still being processed" comes back as ``PENDING``."""
        ...


@dataclass(frozen=True, slots=True)
class AsyncRequestAccepted:
    """Daraja queued an org API request (Transaction Status, Reversal); the result comes later,
    POSTed to the ResultURL and keyed on ``conversation_id``/``originator_conversation_id``."""

    originator_conversation_id: str
    conversation_id: str
    response_description: str = ""


class MpesaOrgApi(Protocol):
    """Daraja's organisation APIs: paybill URL registration, Transaction Status and Reversal.

    Kept apart from ``MpesaGateway`` because they need an API operator (Initiator and its
    RSA-encrypted SecurityCredential) that a school may not have, and answer asynchronously.
    """

    async def register_c2b_urls(
        self, *, shortcode: str, confirmation_url: str, validation_url: str, response_type: str = "Completed"
    ) -> None:
        """Register the paybill's confirmation and validation URLs (``ResponseType`` Completed|Cancelled)."""
        ...

    async def transaction_status(
        self, transaction_id: str, *, result_url: str, timeout_url: str, remarks: str = "Reconciliation"
    ) -> AsyncRequestAccepted:
        """Ask for the status of a receipt (``TransactionID``); the answer is POSTed to ``result_url``."""
        ...

    async def reverse(
        self, transaction_id: str, amount: Money, *, result_url: str, timeout_url: str, remarks: str
    ) -> AsyncRequestAccepted:
        """Reverse a whole receipt (full reversals only); the answer is POSTed to ``result_url``."""
        ...


class Gateways(Protocol):
    """Every provider gateway an institution pays through, and where their callbacks go.

    Implemented by the server (credentials per institution from ``ProviderAccount`` plus
    settings); the flows only ask for the gateway of the intent's institution.
    """

    @property
    def stk_callback_url(self) -> str: ...

    @property
    def airtel_callback_url(self) -> str | None:
        """``None`` in production: Airtel's callback URL is set once on its portal."""
        ...

    @property
    def org_result_url(self) -> str:
        """Where Transaction Status and Reversal results are POSTed."""
        ...

    @property
    def org_timeout_url(self) -> str: ...

    async def mpesa_for(self, session: AsyncSession, institution_id: uuid.UUID) -> MpesaGateway: ...

    async def mpesa_org_for(self, session: AsyncSession, institution_id: uuid.UUID) -> MpesaOrgApi: ...

    async def airtel_for(self, session: AsyncSession, institution_id: uuid.UUID) -> AirtelGateway: ...


@dataclass(frozen=True, slots=True)
class FixedGateways:
    """The same gateways for every institution: for tests and one-school deployments."""

    mpesa: MpesaGateway | None = None
    airtel: AirtelGateway | None = None
    mpesa_org: MpesaOrgApi | None = None
    stk_callback_url: str = ""
    airtel_callback_url: str | None = None
    org_result_url: str = ""
    org_timeout_url: str = ""

    async def mpesa_for(self, session: AsyncSession, institution_id: uuid.UUID) -> MpesaGateway:
        if self.mpesa is None:
            raise GatewayConfigurationError("no M-Pesa gateway is configured", code="mpesa_not_configured")
        return self.mpesa

    async def mpesa_org_for(self, session: AsyncSession, institution_id: uuid.UUID) -> MpesaOrgApi:
        if self.mpesa_org is None:
            raise GatewayConfigurationError("no M-Pesa org API is configured", code="mpesa_org_not_configured")
        return self.mpesa_org

    async def airtel_for(self, session: AsyncSession, institution_id: uuid.UUID) -> AirtelGateway:
        if self.airtel is None:
            raise GatewayConfigurationError("no Airtel Money gateway is configured", code="airtel_not_configured")
        return self.airtel
