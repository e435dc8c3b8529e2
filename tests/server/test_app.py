"""The HTTP shell: health and readiness, request ids, problem+json and request logs."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from pydantic import BaseModel, ValidationError
from pytest_aiohttp import AiohttpClient
from sqlalchemy import exc as sa_exc

from lms_domain import errors
from server.app import create_app
from server.keys import (
    certificate_renderer_key,
    clock_key,
    engine_key,
    kv_key,
    sessionmaker_key,
    settings_key,
    sync_context_key,
)
from server.kv import MemoryStore, RedisStore
from server.logs import JsonFormatter, request_id_var
from server.migrate import head_revision
from server.problems import PROBLEM_CONTENT_TYPE
from server.settings import DatabaseSettings, RedisSettings, Settings

UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/somo"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "instance", "request_id"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")
SECRET_MESSAGE = "database password is hunter2"


def make_settings(database_url: str, *, redis_url: str | None = None) -> Settings:
    # _env_file=None: a developer's .env must not change what these tests see.
    return Settings(
        _env_file=None,
        database=DatabaseSettings(url=database_url),
        redis=RedisSettings(url=redis_url),
    )


# --- liveness and readiness -------------------------------------------------------------


async def test_health_is_ok_even_when_the_database_is_unreachable(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.get("/health")

    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_ready_on_a_migrated_database(aiohttp_client: AiohttpClient, database_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url)))

    response = await client.get("/ready")

    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"status": "ok", "schema": head_revision()}
    assert "redis" not in body["checks"]  # no Redis configured: nothing to check


async def test_ready_fails_on_a_database_that_was_never_migrated(
    aiohttp_client: AiohttpClient, empty_database_url: str
) -> None:
    client = await aiohttp_client(create_app(make_settings(empty_database_url)))

    response = await client.get("/ready")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "fail"
    assert "somo migrate" in body["checks"]["database"]["detail"]


async def test_ready_fails_when_the_database_is_unreachable(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.get("/ready")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "fail"
    assert "127.0.0.1" not in json.dumps(body)  # no connection details for anonymous callers


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_ready_checks_redis_when_configured(
    aiohttp_client: AiohttpClient, database_url: str, redis_url: str
) -> None:
    app = create_app(make_settings(database_url, redis_url=redis_url))
    client = await aiohttp_client(app)

    response = await client.get("/ready")

    assert response.status == 200
    body = await response.json()
    assert body["checks"]["redis"] == {"status": "ok"}
    assert isinstance(app[kv_key], RedisStore)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_ready_fails_when_redis_is_unreachable(aiohttp_client: AiohttpClient, database_url: str) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url, redis_url=UNREACHABLE_REDIS)))

    response = await client.get("/ready")

    assert response.status == 503
    body = await response.json()
    assert body["status"] == "fail"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "fail"


# --- request ids --------------------------------------------------------------------------


async def test_a_safe_incoming_request_id_is_echoed(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.get("/health", headers={"X-Request-ID": "lb-7f3a.2_X-9"})

    assert response.headers["X-Request-ID"] == "lb-7f3a.2_X-9"


@pytest.mark.parametrize(
    "unsafe",
    ["has spaces in it", "a" * 200, "a" * 65, "line\tbreak", 'quote"d', "ümlaut", "../../etc/passwd"],
)
async def test_an_unsafe_request_id_is_replaced(aiohttp_client: AiohttpClient, unsafe: str) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.get("/health", headers={"X-Request-ID": unsafe})

    assert HEX32.match(response.headers["X-Request-ID"])


async def test_a_request_without_an_id_gets_a_fresh_one_each_time(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    first = (await client.get("/health")).headers["X-Request-ID"]
    second = (await client.get("/health")).headers["X-Request-ID"]

    assert HEX32.match(first)
    assert HEX32.match(second)
    assert first != second


# --- problem+json -------------------------------------------------------------------------


def _raising(exc_factory: Callable[[], BaseException]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        raise exc_factory()

    return handler


class _Body(BaseModel):
    amount: int
    phone: str


def _pydantic_error() -> ValidationError:
    try:
        _Body.model_validate({"amount": "lots"})
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a validation error")


def _app_with_failing_routes() -> web.Application:
    app = create_app(make_settings(UNREACHABLE_POSTGRES))
    app.router.add_get("/_test/notfound", _raising(lambda: errors.NotFound("no such course")))
    app.router.add_get("/_test/conflict", _raising(lambda: errors.Conflict("already enrolled", code="dup")))
    app.router.add_get("/_test/invalid", _raising(lambda: errors.InvalidInput("bad pin", code="x", field="y")))
    app.router.add_get("/_test/precondition", _raising(lambda: errors.PreconditionFailed("enroll first")))
    app.router.add_get("/_test/validation", _raising(_pydantic_error))
    app.router.add_get("/_test/bug", _raising(lambda: RuntimeError(SECRET_MESSAGE)))
    app.router.add_get("/_test/redirect", _raising(lambda: web.HTTPFound("/health")))
    app.router.add_get("/_test/teapot", _raising(lambda: web.HTTPTooManyRequests(headers={"Retry-After": "7"})))
    app.router.add_get("/_test/deadlock", _raising(lambda: sa_exc.OperationalError("SELECT", {}, _PgError("40P01"))))
    app.router.add_get(
        "/_test/locked", _raising(lambda: sa_exc.OperationalError("BEGIN", {}, Exception("database is locked")))
    )
    app.router.add_get("/_test/dberror", _raising(lambda: sa_exc.OperationalError("SELECT", {}, _PgError("42P01"))))
    return app


class _PgError(Exception):
    """What a driver error carries: its SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


async def test_deadlocks_and_busy_databases_ask_for_a_retry(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(_app_with_failing_routes())
    for path in ("/_test/deadlock", "/_test/locked"):
        response = await client.get(path)
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert (await response.json())["code"] == "retry"
    other = await client.get("/_test/dberror")
    assert other.status == 500  # any other database error is a bug, reported as such


async def _problem(response: object) -> dict[str, object]:
    from aiohttp import ClientResponse

    assert isinstance(response, ClientResponse)
    assert response.content_type == PROBLEM_CONTENT_TYPE
    body = await response.json(content_type=PROBLEM_CONTENT_TYPE)
    assert isinstance(body, dict)
    assert body.keys() >= PROBLEM_KEYS
    assert body["status"] == response.status
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert body["type"] == f"https://docs.somo.africa/problems/{body['code']}"
    return body


async def test_an_unknown_path_is_a_problem_404(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.get("/no/such/thing", headers={"X-Request-ID": "trace-404"})

    assert response.status == 404
    body = await _problem(response)
    assert body["code"] == "not_found"
    assert body["instance"] == "/no/such/thing"
    assert body["request_id"] == "trace-404"


async def test_a_wrong_method_is_a_problem_405_with_allow(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    response = await client.post("/health")

    assert response.status == 405
    body = await _problem(response)
    assert body["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/_test/notfound", 404, "not_found"),
        ("/_test/conflict", 409, "dup"),
        ("/_test/invalid", 422, "x"),
        ("/_test/precondition", 409, "precondition_failed"),
        ("/_test/validation", 422, "validation_error"),
        ("/_test/bug", 500, "internal_error"),
    ],
)
async def test_errors_become_problems(aiohttp_client: AiohttpClient, path: str, status: int, code: str) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    response = await client.get(path)

    assert response.status == status
    body = await _problem(response)
    assert body["code"] == code
    assert body["instance"] == path


async def test_domain_error_detail_and_extra_fields_are_carried(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    body = await _problem(await client.get("/_test/invalid"))

    assert body["detail"] == "bad pin"
    assert body["title"] == "Invalid input"
    assert body["field"] == "y"


async def test_validation_errors_list_every_field(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    body = await _problem(await client.get("/_test/validation"))

    listed = body["errors"]
    assert isinstance(listed, list)
    assert sorted(tuple(e["loc"]) for e in listed) == [("amount",), ("phone",)]
    assert "lots" not in json.dumps(body)  # the submitted value is not echoed back


async def test_a_bug_is_a_bare_500_that_leaks_nothing(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    with caplog.at_level(logging.INFO):
        response = await client.get("/_test/bug")
        text = await response.text()

    assert response.status == 500
    assert SECRET_MESSAGE not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text
    assert response.headers["X-Request-ID"] in text  # something to quote when reporting it
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 1
    assert logged[0].exc_info is not None  # the operator still gets the traceback, in the log


async def test_http_exception_headers_are_kept(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    response = await client.get("/_test/teapot")

    assert response.status == 429
    assert response.headers["Retry-After"] == "7"
    assert (await _problem(response))["code"] == "too_many_requests"


async def test_a_raised_redirect_is_not_turned_into_a_problem(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    response = await client.get("/_test/redirect", allow_redirects=False)

    assert response.status == 302
    assert response.headers["Location"] == "/health"
    assert response.content_type != PROBLEM_CONTENT_TYPE


async def test_a_raised_redirect_keeps_the_request_id_and_is_logged_as_302(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(_app_with_failing_routes())

    with caplog.at_level(logging.INFO, logger="somo.http"):
        response = await client.get("/_test/redirect", headers={"X-Request-ID": "trace-302"}, allow_redirects=False)

    assert response.status == 302
    (record,) = [r for r in caplog.records if r.name == "somo.http" and r.getMessage() == "request"]
    assert vars(record)["status"] == 302
    assert response.headers.get("X-Request-ID") == "trace-302"


# --- logs ---------------------------------------------------------------------------------


async def test_every_request_is_logged_once(aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))

    with caplog.at_level(logging.INFO, logger="somo.http"):
        ok = await client.get("/health", headers={"X-Request-ID": "log-me"})
        missing = await client.get("/nowhere")

    records = [r for r in caplog.records if r.name == "somo.http" and r.getMessage() == "request"]
    fields = [vars(r) for r in records]  # the extra= attributes live on the record
    seen = [(f["method"], f["path"], f["status"]) for f in fields]
    assert seen == [("GET", "/health", 200), ("GET", "/nowhere", 404)]
    assert all(isinstance(f["duration_ms"], float) and f["duration_ms"] >= 0 for f in fields)
    assert ok.status == 200
    assert missing.status == 404


async def test_the_request_log_line_carries_the_request_id(
    aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(make_settings(UNREACHABLE_POSTGRES)))
    formatter = JsonFormatter()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))  # formatted while the request context is live

    handler = Collect()
    logger = logging.getLogger("somo.http")
    logger.addHandler(handler)
    try:
        with caplog.at_level(logging.INFO, logger="somo.http"):
            await client.get("/health", headers={"X-Request-ID": "abc-123"})
    finally:
        logger.removeHandler(handler)

    (line,) = lines
    payload = json.loads(line)
    assert payload["request_id"] == "abc-123"
    assert payload["msg"] == "request"
    assert payload["status"] == 200
    assert request_id_var.get() is None  # reset once the request is done


def test_json_formatter_writes_one_line_with_the_request_id() -> None:
    record = logging.getLogger("somo.test").makeRecord(
        "somo.test",
        logging.WARNING,
        __file__,
        1,
        "paid %s",
        ("KES 300",),
        None,
        extra={"learner": "Wanjirũ", "amount_minor": 30000},
    )
    token = request_id_var.set("req-42")
    try:
        line = JsonFormatter().format(record)
    finally:
        request_id_var.reset(token)

    assert "\n" not in line
    payload = json.loads(line)
    assert payload["request_id"] == "req-42"
    assert payload["msg"] == "paid KES 300"
    assert payload["level"] == "warning"
    assert payload["logger"] == "somo.test"
    assert payload["learner"] == "Wanjirũ"
    assert payload["amount_minor"] == 30000
    assert payload["ts"].endswith("+00:00")


def test_json_formatter_keeps_a_traceback_on_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.getLogger("somo.test").makeRecord("somo.test", logging.ERROR, __file__, 1, "failed", (), exc_info)

    line = JsonFormatter().format(record)

    assert "\n" not in line
    payload = json.loads(line)
    assert "ValueError: boom" in payload["exc"]
    assert "request_id" not in payload  # outside a request there is none


# --- wiring -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_app_uses_typed_keys_only(aiohttp_client: AiohttpClient, database_url: str) -> None:
    settings = make_settings(database_url)
    app = create_app(settings)
    assert app[settings_key] is settings
    assert clock_key in app
    assert certificate_renderer_key in app

    await aiohttp_client(app)  # start-up runs the cleanup contexts

    for key in (engine_key, sessionmaker_key, sync_context_key, kv_key):
        assert key in app
    assert isinstance(app[kv_key], MemoryStore)  # no Redis configured
    assert all(isinstance(key, web.AppKey) for key in app)
