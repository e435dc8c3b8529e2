"""How a console page is wired: one decorator signs the browser in, checks the role and the
CSRF token, opens units of work, maps domain errors to a readable page, and renders.

Pages are thin, like the REST handlers: open a unit of work, call the same ``lms_domain``
service the API calls, render the result. They hold no SQL of their own.
"""

from __future__ import annotations

import csv
import hmac
import io
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDict, MultiDictProxy, MultiMapping
from pydantic import BaseModel, ValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import exc as sa_orm_exc

from lms_domain.access import Actor
from lms_domain.auth.service import current_actor
from lms_domain.clock import Clock
from lms_domain.errors import DomainError, NotFound
from lms_domain.platform import audit
from lms_domain.tenancy.models import Role
from server.admin.i18n import translate
from server.admin.menu import STAFF, menu_for
from server.admin.sessions import COOKIE, AdminSession
from server.keys import (
    admin_sessions_key,
    clock_key,
    read_sessionmaker_key,
    request_id_key,
    sessionmaker_key,
    settings_key,
)
from server.problems import status_for

log = logging.getLogger("somo.admin")
NAIROBI = ZoneInfo("Africa/Nairobi")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
EMPTY_FORM: MultiDictProxy[str] = MultiDictProxy(MultiDict())
# The CSRF token of the page being rendered, for macros imported without the template's
# context (``{% import "admin/macros.html" as m %}``); rendering is synchronous, so the value
# cannot leak into another request's page.
rendering_csrf: ContextVar[str] = ContextVar("rendering_csrf", default="")
# Console pages may be framed by nothing, load scripts and styles only from the console
# itself, and never be cached (they hold one school's data).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class FormInvalid(Exception):
    """A form the page should show again, with what is wrong with each field."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass
class Page:
    """What a console handler gets: the request, the signed-in actor, and the form."""

    request: web.Request
    session: AdminSession
    actor: Actor
    form: MultiDictProxy[str] = field(default_factory=lambda: EMPTY_FORM)

    @property
    def app(self) -> web.Application:
        return self.request.app

    @property
    def clock(self) -> Clock:
        return self.app[clock_key]

    @property
    def lang(self) -> str:
        return self.session.lang

    @property
    def query(self) -> MultiMapping[str]:
        return self.request.query

    def _(self, text: str) -> str:
        return translate(self.lang, text)

    def path_uuid(self, name: str) -> uuid.UUID:
        try:
            return uuid.UUID(self.request.match_info[name])
        except ValueError:
            raise NotFound(f"no {name.removesuffix('_id')} with that id") from None

    @asynccontextmanager
    async def uow(self) -> AsyncIterator[AsyncSession]:
        """A read-write unit of work: commits if the block succeeds."""
        async with self.app[sessionmaker_key]() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self.app[read_sessionmaker_key]() as session, session.begin():
            yield session

    async def audit(
        self,
        session: AsyncSession,
        *,
        action: str,
        target_type: str,
        target_id: uuid.UUID | str,
        institution_id: uuid.UUID | None,
        before: BaseModel | Mapping[str, Any] | None = None,
        after: BaseModel | Mapping[str, Any] | None = None,
    ) -> None:
        """Record the action in the same unit of work as the change itself."""
        await audit.record(
            session=session,
            actor=self.actor,
            action=action,
            target_type=target_type,
            target_id=target_id,
            institution_id=institution_id,
            before=audit.snapshot(before),
            after=audit.snapshot(after),
            request_id=self.request.get(request_id_key),
            now=self.clock.now(),
        )

    def validate(self, model: type[M], data: Mapping[str, Any]) -> M:
        """``data`` as ``model``, or ``FormInvalid`` naming each bad field."""
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            errors: dict[str, str] = {}
            for error in exc.errors(include_url=False, include_input=False):
                name = ".".join(str(p) for p in error["loc"]) or "form"
                errors.setdefault(name, error["msg"])
            raise FormInvalid(errors) from None

    def flash(self, text: str, kind: str = "ok") -> None:
        self.session.flashes.append((kind, text))

    async def redirect(self, location: str) -> web.Response:
        """303 to ``location``, keeping any flash message for the next page."""
        await self.app[admin_sessions_key].save(self.session)
        return web.Response(status=303, headers={"Location": location})

    def url(self, path: str | None = None, **params: Any) -> str:
        """This page (or ``path``) with its query string, some parameters replaced."""
        merged = {k: v for k, v in self.query.items() if k not in params}
        merged.update({k: v for k, v in params.items() if v not in (None, "")})
        query = urlencode(merged)
        return (path or self.request.path) + (f"?{query}" if query else "")

    async def render(
        self, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
    ) -> web.Response:
        flashes, self.session.flashes = self.session.flashes, []
        if flashes:
            await self.app[admin_sessions_key].save(self.session)
        ctx = {
            "page": self,
            "actor": self.actor,
            "username": self.session.username,
            "menu": menu_for(self.actor),
            "csrf": self.session.csrf,
            "lang": self.lang,
            "_": self._,
            "flashes": flashes,
            "path": self.request.path,
            **(context or {}),
        }
        token = rendering_csrf.set(self.session.csrf)
        try:
            return aiohttp_jinja2.render_template(template, self.request, ctx, status=status)
        finally:
            rendering_csrf.reset(token)

    # Query-string helpers for list pages --------------------------------------------------

    def q(self, name: str, default: str = "") -> str:
        return self.query.get(name, default).strip()

    def day_range(self) -> tuple[datetime | None, datetime | None]:
        """``from`` and ``to`` (Nairobi dates, inclusive) as a UTC half-open range."""
        return _nairobi_day(self.q("from")), _nairobi_day(self.q("to"), next_day=True)

    @property
    def wants_csv(self) -> bool:
        return self.q("format") == "csv"


def _nairobi_day(text: str, *, next_day: bool = False) -> datetime | None:
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise FormInvalid({"date": f"{text!r} is not a date (YYYY-MM-DD)"}) from None
    if next_day:
        day += timedelta(days=1)
    return datetime.combine(day, time(0), tzinfo=NAIROBI)


async def every_page(
    fetch: Callable[[str | None], Awaitable[tuple[Sequence[T], str | None]]], *, max_rows: int = 50_000
) -> list[T]:
    """Every row a list shows, page by page through the list's own domain query (so exports are
    scoped and filtered exactly like the page), stopping at ``max_rows``."""
    rows: list[T] = []
    cursor: str | None = None
    while len(rows) < max_rows:
        batch, cursor = await fetch(cursor)
        rows.extend(batch)
        if cursor is None:
            break
    return rows[:max_rows]


def csv_response(filename: str, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> web.Response:
    """A CSV download. Cells starting like a formula are prefixed so a spreadsheet shows them as
    text (CSV injection: a learner's name typed as ``=HYPERLINK(...)``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    response = web.Response(body=buffer.getvalue().encode("utf-8-sig"), content_type="text/csv", charset="utf-8")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(NAIROBI).strftime("%Y-%m-%d %H:%M")
    text = str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


Handler = Callable[[Page], Awaitable[web.StreamResponse]]


class AdminRoutes:
    """The console routes of one area; ``server.admin.setup_admin`` adds them all."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, Handler, frozenset[Role]]] = []

    def get(self, path: str, *, roles: frozenset[Role] = STAFF) -> Callable[[Handler], Handler]:
        return self._add("GET", path, roles)

    def post(self, path: str, *, roles: frozenset[Role] = STAFF) -> Callable[[Handler], Handler]:
        return self._add("POST", path, roles)

    def _add(self, method: str, path: str, roles: frozenset[Role]) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.routes.append((method, path, handler, roles))
            return handler

        return decorate


def same_origin(request: web.Request) -> bool:
    """Refuse what a browser says came from another site (belt and braces beside the token).
    Behind a proxy the Host header may be rewritten, so the public URL's host counts too."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    authority = origin.split("://", 1)[-1]
    public = request.app[settings_key].http.public_url.split("://", 1)[-1].rstrip("/")
    return authority in (request.host, public)


def tokens_match(sent: object, expected: str) -> bool:
    """Constant-time comparison of a CSRF token; anything that is not a short ASCII string is
    simply wrong (``compare_digest`` would raise on non-ASCII text)."""
    if not isinstance(sent, str) or not sent or len(sent) > 128 or not sent.isascii():
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def safe_next(target: str, default: str = "/admin") -> str:
    """Only a path inside the console: never another site, never a header-breaking character."""
    if (
        target.startswith("/admin")
        and not target.startswith("//")
        and "\\" not in target
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
        and len(target) <= 2048
    ):
        return target
    return default


def secure_cookies(request: web.Request) -> bool:
    http = request.app[settings_key].http
    return request.secure or http.behind_https or http.public_url.startswith("https://")


async def _text_form(request: web.Request) -> tuple[MultiDictProxy[str] | None, object]:
    """The POSTed form with text values only, and its CSRF field. The form is None when it
    carries a file: no console form uploads one, so a file part is a forged request, refused
    before any handler sees it."""
    raw = await request.post()
    values: MultiDict[str] = MultiDict()
    files = False
    for key, value in raw.items():
        if isinstance(value, str):
            values.add(key, value)
        else:
            files = True
    return (None if files else MultiDictProxy(values)), values.get("_csrf")


async def signed_in(request: web.Request) -> tuple[AdminSession, Actor] | None:
    """The console session and its actor, read afresh; None when signed out or no longer allowed."""
    store = request.app[admin_sessions_key]
    session = await store.load(request.cookies.get(COOKIE))
    if session is None:
        return None
    async with request.app[read_sessionmaker_key]() as db, db.begin():
        actor = await current_actor(session=db, user_id=session.user_uuid)
    if actor is None or actor.role not in STAFF:
        await store.end(session)
        return None
    return session, actor


def wrap(
    handler: Handler, method: str, roles: frozenset[Role]
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def route(request: web.Request) -> web.StreamResponse:
        found = await signed_in(request)
        if found is None:
            if "X-CSRF-Token" in request.headers:  # a page's script (live preview): no redirect to follow
                return _secure(web.Response(status=401, text="signed out", headers={"X-Signed-Out": "1"}))
            target = request.path_qs if method == "GET" else "/admin"
            return web.Response(status=303, headers={"Location": "/admin/login?" + urlencode({"next": target})})
        session, actor = found
        page = Page(request=request, session=session, actor=actor)
        if method == "POST":
            form, token = await _text_form(request)
            token = token or request.headers.get("X-CSRF-Token", "")
            if not same_origin(request) or not tokens_match(token, session.csrf):
                log.warning("csrf refused", extra={"path": request.path, "user": session.username})
                message = "The form was out of date or not sent from this console. Reload the page and try again."
                return _secure(await _error(page, 403, page._(message)))
            if form is None:
                return _secure(await _error(page, 422, page._("Some fields need correcting; nothing was saved.")))
            page.form = form
        if actor.role not in roles:
            return _secure(await _error(page, 403, page._("This page needs another role.")))
        try:
            response = await handler(page)
        except FormInvalid as exc:
            response = await _error(page, 422, page._("Some fields need correcting; nothing was saved."), exc.errors)
        except DomainError as exc:
            field = exc.extra.get("field")
            errors = {str(field): exc.detail} if field else None
            response = await _error(page, status_for(exc), exc.detail or exc.title, errors)
        except ValidationError as exc:
            errors = {".".join(str(p) for p in e["loc"]) or "form": e["msg"] for e in exc.errors(include_url=False)}
            response = await _error(page, 422, page._("Some fields need correcting; nothing was saved."), errors)
        except (sa_exc.IntegrityError, sa_orm_exc.StaleDataError):
            # Two changes to the same record at once (two admins, or a school's sync merging
            # meanwhile): the unit of work rolled back whole, so trying again is safe.
            log.info("console write conflict", exc_info=True)
            message = "Someone else changed this at the same moment. Nothing was saved; reload and try again."
            response = await _error(page, 409, page._(message))
        except web.HTTPException:
            raise
        except Exception:
            log.exception("console page failed")
            message = "Something went wrong on our side. Nothing was saved; quote the request id when reporting it."
            response = await _error(page, 500, page._(message) + f" ({request.get(request_id_key, '')})")
        return _secure(response)

    return route


async def _error(page: Page, status: int, message: str, errors: Mapping[str, str] | None = None) -> web.Response:
    context = {"status": status, "message": message, "errors": dict(errors or {})}
    return await page.render("admin/error.html", context, status=status)


def _secure(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response
