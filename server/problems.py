"""RFC 9457 problem details: the one shape every error response takes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lms_domain import errors
from lms_domain.payments import ports
from server.keys import request_id_key

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "https://docs.somo.africa/problems/"

_STATUS_BY_ERROR: list[tuple[type[errors.DomainError], int]] = [
    # The provider's fault, not the caller's: a gateway answer (502) or no answer yet (503).
    (ports.GatewayUnavailable, 503),
    (ports.PaymentGatewayError, 502),
    (errors.NotFound, 404),
    (errors.Unauthenticated, 401),
    (errors.PermissionDenied, 403),
    (errors.Conflict, 409),
    (errors.PreconditionFailed, 409),
    (errors.Gone, 410),
    (errors.InvalidInput, 422),
    (errors.PaymentDeclined, 402),
    (errors.NotImplementedYet, 501),
    (errors.RateLimited, 429),
]


def status_for(error: errors.DomainError) -> int:
    for cls, status in _STATUS_BY_ERROR:
        if isinstance(error, cls):
            return status
    return 400


def problem_response(
    *, status: int, code: str, title: str, detail: str, request: web.Request, extra: dict[str, Any] | None = None
) -> web.Response:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "instance": request.path,
    }
    request_id = request.get(request_id_key)
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    return web.Response(status=status, text=json.dumps(body, default=str), content_type=PROBLEM_CONTENT_TYPE)
