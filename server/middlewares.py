"""Request id and error mapping: the two middlewares every route runs through."""

from __future__ import annotations

import logging
import re
import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import exc as sa_orm_exc

from lms_domain.db import is_transient
from lms_domain.errors import DomainError
from server.keys import request_id_key
from server.logs import request_id_var
from server.problems import problem_response, status_for

log = logging.getLogger("somo.http")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take the caller's X-Request-ID if it is safe to log, else mint one; log one line."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[request_id_key] = request_id
    token = request_id_var.set(request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    except web.HTTPException as exc:  # redirects are raised, and pass problem_middleware
        status = exc.status
        exc.headers["X-Request-ID"] = request_id
        raise
    finally:
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": loggable_path(request.path),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        request_id_var.reset(token)


def loggable_path(path: str) -> str:
    """``path`` without the secret segment of provider callback URLs (/callbacks/<p>/<secret>/...)."""
    if not path.startswith("/callbacks/"):
        return path
    parts = path.split("/")
    if len(parts) > 3:
        parts[3] = "<secret>"
    return "/".join(parts)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "error"


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error into problem+json: domain errors, HTTP errors, validation, bugs."""
    try:
        return await handler(request)
    except DomainError as exc:
        response = problem_response(
            status=status_for(exc), code=exc.code, title=exc.title, detail=exc.detail, request=request, extra=exc.extra
        )
        if "retry_after_s" in exc.extra:
            response.headers["Retry-After"] = str(int(exc.extra["retry_after_s"]))
        if response.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="somo"'
        return response
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        return problem_response(
            status=422,
            code="validation_error",
            title="Invalid request body",
            detail="; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors),
            request=request,
            extra={"errors": errors},
        )
    except sa_orm_exc.StaleDataError:
        # A row changed under this unit of work (a school's sync merged a newer version of it
        # meanwhile): nothing was written; the caller reads again and retries.
        log.info("stale write refused", exc_info=True)
        return problem_response(
            status=409,
            code="changed_meanwhile",
            title="Conflict",
            detail="the record changed while this request was working on it; read it again and retry",
            request=request,
        )
    except sa_exc.IntegrityError:
        # A uniqueness or foreign-key race that the service's own checks could not see
        # (two identical requests at the same instant). Nothing was written: roll back, 409.
        log.info("integrity conflict", exc_info=True)
        return problem_response(
            status=409,
            code="conflict",
            title="Conflict",
            detail="the change conflicts with another one made at the same time; retry",
            request=request,
        )
    except sa_exc.DataError:
        log.info("data rejected by the database", exc_info=True)
        return problem_response(
            status=422,
            code="invalid_input",
            title="Invalid input",
            detail="a value was rejected by the database (out of range or malformed)",
            request=request,
        )
    except sa_exc.DBAPIError as exc:
        # Deadlocks and serialisation failures (Postgres 40P01, 40001) and a busy SQLite:
        # the transaction was rolled back whole, and the same request will succeed if retried.
        if not is_transient(exc):
            raise
        log.warning("transient database conflict", exc_info=True)
        response = problem_response(
            status=503,
            code="retry",
            title="Try again",
            detail="the database was busy with a conflicting change; retry the request",
            request=request,
        )
        response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_response(
            status=exc.status,
            code=_slug(exc.reason),
            title=exc.reason,
            detail=exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason,
            request=request,
        )
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in exc.headers:
                response.headers[header] = exc.headers[header]
        return response
    except Exception:
        log.exception("unhandled error")
        return problem_response(
            status=500,
            code="internal_error",
            title="Internal server error",
            detail="Something went wrong on our side; quote the request id when reporting it.",
            request=request,
        )
