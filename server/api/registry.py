"""Declared operations: one decorator wires an aiohttp route, validates input with the
domain's pydantic schemas, checks the caller's role, serialises the answer, and records
everything the OpenAPI document needs. The document is generated, never hand-written, so
it cannot drift from what the handlers accept and return.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor
from lms_domain.clock import Clock
from lms_domain.errors import InvalidInput, NotFound, Unauthenticated
from lms_domain.projections import Projection
from lms_domain.tenancy.models import Role
from server.auth.tokens import actor_from_request
from server.keys import clock_key, projections_key, read_sessionmaker_key, sessionmaker_key

B = TypeVar("B", bound=BaseModel)
Q = TypeVar("Q", bound=BaseModel)
Auth = Literal["public", "authenticated"] | frozenset[Role]
PUBLIC: Auth = "public"
AUTHENTICATED: Auth = "authenticated"
JSON_TYPE = "application/json"


class NoBody(BaseModel):
    """Placeholder for operations without a body or query."""


@dataclass
class Call(Generic[B, Q]):
    """What a handler gets: the request, the caller, and validated input."""

    request: web.Request
    actor_or_none: Actor | None
    body: B
    query: Q
    # Set by idempotent operations: the unit of work then joins the transaction that
    # also stores the response, so both commit together.
    shared_session: AsyncSession | None = None

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def actor(self) -> Actor:
        if self.actor_or_none is None:
            raise Unauthenticated("sign in first")
        return self.actor_or_none

    @property
    def clock(self) -> Clock:
        return self.app[clock_key]

    def path_uuid(self, name: str) -> uuid.UUID:
        """A UUID path parameter; anything else is simply a resource that does not exist."""
        try:
            return uuid.UUID(self.request.match_info[name])
        except ValueError:
            raise NotFound(f"no {name.removesuffix('_id')} with that id") from None

    @asynccontextmanager
    async def uow(self) -> AsyncIterator[AsyncSession]:
        """A read-write unit of work: commits if the block succeeds."""
        if self.shared_session is not None:
            yield self.shared_session
            return
        async with self.app[sessionmaker_key]() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only unit of work: never takes SQLite's write lock."""
        async with self.app[read_sessionmaker_key]() as session, session.begin():
            yield session

    @asynccontextmanager
    async def rows(self) -> AsyncIterator[Projection]:
        """A read projection (no ORM session): for lists that go straight to JSON."""
        async with self.app[projections_key].connect() as projection:
            yield projection


Handler = Callable[[Call[Any, Any]], Awaitable[Any]]


@dataclass
class Operation:
    method: str
    path: str
    handler: Handler
    summary: str
    tags: list[str]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    auth: Auth
    idempotent: bool
    content_type: str
    description: str
    operation_id: str
    extra_responses: dict[int, str] = field(default_factory=dict)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


class Api:
    """A group of operations sharing a tag; ``register`` adds them under a prefix."""

    def __init__(self, tag: str, *, description: str = "", prefix: str | None = None) -> None:
        self.tag = tag
        self.description = description
        self.prefix = prefix  # None: the API's own prefix (/api/v1); "" for public pages
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        auth: Auth = AUTHENTICATED,
        idempotent: bool = False,
        content_type: str = JSON_TYPE,
        extra_responses: dict[int, str] | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    summary=summary,
                    tags=[self.tag],
                    body=body,
                    query=query,
                    response=response,
                    status=status,
                    auth=auth,
                    idempotent=idempotent,
                    content_type=content_type,
                    description=inspect.cleandoc(handler.__doc__ or ""),
                    operation_id=handler.__name__,
                    extra_responses=extra_responses or {},
                )
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.operation("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.operation("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.operation("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.operation("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[Handler], Handler]:
        return self.operation("DELETE", path, **kw)


async def _read_body(request: web.Request, model: type[BaseModel]) -> BaseModel:
    raw = await request.read()
    if not raw.strip():
        raw = b"{}"
    elif request.content_type != JSON_TYPE:
        raise web.HTTPUnsupportedMediaType(text=f"send the body as {JSON_TYPE}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise InvalidInput("the body is not valid JSON", code="invalid_json") from None
    _refuse_nul(data, "body")
    # Strict JSON validation: "yes" is not a boolean and "12" is not a number, so clients
    # learn about type mistakes instead of having them silently coerced.
    return model.model_validate_json(raw, strict=True)


def _refuse_nul(value: Any, where: str) -> None:
    """NUL characters are valid JSON but no database text column takes them (Postgres
    refuses them outright); refuse them once, here, with the field that carried one."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise InvalidInput(f"{path} contains a NUL character", code="nul_character", field=path)
        elif isinstance(item, dict):
            stack.extend((v, f"{path}.{k}") for k, v in item.items())
            stack.extend((k, f"{path}.{k}") for k in item if isinstance(k, str))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))


def _authorise(operation: Operation, actor: Actor | None) -> None:
    if operation.auth == PUBLIC:
        return
    if actor is None:
        raise Unauthenticated("sign in first: send Authorization: Bearer <access token>")
    if isinstance(operation.auth, frozenset):
        actor.require(*operation.auth)


def _serialise(operation: Operation, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204)
    if isinstance(result, BaseModel):
        return web.Response(status=operation.status, body=result.model_dump_json().encode(), content_type=JSON_TYPE)
    raise TypeError(f"{operation.operation_id} returned {type(result).__name__}, not a pydantic model")


def make_route_handler(operation: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def route(request: web.Request) -> web.StreamResponse:
        actor = actor_from_request(request)
        _authorise(operation, actor)
        _refuse_nul(dict(request.query), "query")
        _refuse_nul(dict(request.match_info), "path")
        try:
            query = (operation.query or NoBody).model_validate(dict(request.query))
        except ValidationError as exc:
            raise _locate(exc, "query") from None
        try:
            body = await _read_body(request, operation.body) if operation.body else NoBody()
        except ValidationError as exc:
            raise _locate(exc, "body") from None
        call: Call[Any, Any] = Call(request=request, actor_or_none=actor, body=body, query=query)
        if operation.idempotent:
            from server.api.idempotency import run_idempotent

            return await run_idempotent(call, operation, lambda: _run(operation, call))
        return await _run(operation, call)

    return route


async def _run(operation: Operation, call: Call[Any, Any]) -> web.StreamResponse:
    return _serialise(operation, await operation.handler(call))


class LocatedValidationError(InvalidInput):
    """Validation errors with field paths prefixed by where they came from (body, query)."""


def _locate(exc: ValidationError, where: str) -> LocatedValidationError:
    errors = [
        {"loc": [where, *[str(p) for p in e["loc"]]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False)
    ]
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    return LocatedValidationError(detail, code="validation_error", errors=errors)


def register(app: web.Application, apis: Iterable[Api], *, prefix: str) -> None:
    for api in apis:
        base = prefix if api.prefix is None else api.prefix
        for operation in api.operations:
            app.router.add_route(operation.method, base + operation.path, make_route_handler(operation))
