"""Domain errors.

Services raise these; each channel translates them once (problem+json for HTTP, an
``END`` screen for USSD). ``code`` is a stable machine-readable slug that clients may
switch on, so it must never change once published.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a use case may raise on purpose."""

    code = "domain_error"
    title = "Request could not be completed"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class PermissionDenied(DomainError):
    code = "permission_denied"
    title = "Permission denied"


class Unauthenticated(DomainError):
    code = "unauthenticated"
    title = "Authentication required"


class InvalidInput(DomainError):
    code = "invalid_input"
    title = "Invalid input"


class PreconditionFailed(DomainError):
    """The request is well formed but the learner's state forbids it (e.g. prerequisites)."""

    code = "precondition_failed"
    title = "Precondition failed"


class Gone(DomainError):
    """What the request names is no longer kept (a sync cursor older than the deletions
    already collected): start again from the beginning."""

    code = "gone"
    title = "Gone"


class PaymentDeclined(DomainError):
    code = "payment_declined"
    title = "Payment declined"


class RateLimited(DomainError):
    """Too many requests; ``extra['retry_after_s']`` says when to come back."""

    code = "too_many_requests"
    title = "Too many requests"


class NotImplementedYet(DomainError):
    """A capability whose adapter has not landed; names the missing piece."""

    code = "not_implemented"
    title = "Not implemented"
