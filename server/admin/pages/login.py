"""Signing in and out of the console, and choosing its language."""

from __future__ import annotations

import logging
import math

import aiohttp_jinja2
from aiohttp import web

from lms_domain.access import Actor
from lms_domain.auth.service import actor_for, authenticate
from lms_domain.errors import DomainError
from lms_domain.platform import audit
from server.admin.i18n import LANGUAGES, translate
from server.admin.menu import STAFF
from server.admin.sessions import COOKIE, new_token
from server.admin.views import (
    SECURITY_HEADERS,
    AdminRoutes,
    Page,
    safe_next,
    same_origin,
    secure_cookies,
    signed_in,
    tokens_match,
)
from server.keys import (
    admin_sessions_key,
    buckets_key,
    clock_key,
    hasher_key,
    request_id_key,
    sessionmaker_key,
)

log = logging.getLogger("somo.admin")
routes = AdminRoutes()
LOGIN_CSRF_COOKIE = "somo_admin_login"
LANG_COOKIE = "somo_admin_lang"
# Sign-in tries per client address: each costs an argon2 verification (tens of milliseconds of
# CPU), so an unlimited form is a cheap way to load the server and to lock admins out.
LOGIN_RATE_PER_S = 5 / 60
LOGIN_BURST = 10


def _login_lang(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get(LANG_COOKIE, "en")
    return lang if lang in LANGUAGES else "en"


def _login_page(request: web.Request, *, error: str = "", status: int = 200, login: str = "") -> web.Response:
    lang = _login_lang(request)
    # Before sign-in there is no session to hold a CSRF token: a double-submitted cookie
    # stops another site from signing a browser in to an account of its choosing.
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not (token.isascii() and 20 <= len(token) <= 128):
        token = new_token()
    response = aiohttp_jinja2.render_template(
        "admin/login.html",
        request,
        {
            "_": lambda text: translate(lang, text),
            "lang": lang,
            "csrf": token,
            "error": error,
            "login": login,
            "next": safe_next(request.query.get("next", "/admin")),
        },
        status=status,
    )
    secure = secure_cookies(request)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/admin")
    response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="Lax", secure=secure, path="/admin")
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if await signed_in(request) is not None:
        return web.Response(status=303, headers={"Location": safe_next(request.query.get("next", "/admin"))})
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    lang = _login_lang(request)
    wait = await request.app[buckets_key].take(
        f"admin-login:{request.remote}", rate=LOGIN_RATE_PER_S, burst=LOGIN_BURST
    )
    if wait > 0:
        response = _login_page(
            request, error=translate(lang, "Too many sign-in attempts from here. Wait a minute."), status=429
        )
        response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return response
    form = await request.post()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not same_origin(request) or not tokens_match(form.get("_csrf"), cookie):
        return _login_page(request, error=translate(lang, "The form expired. Please sign in again."), status=403)
    login, password = str(form.get("login", "")).strip(), str(form.get("password", ""))
    if not login or not password:
        return _login_page(request, error=translate(lang, "Enter your username and password."), status=422, login=login)
    app = request.app
    try:
        async with app[sessionmaker_key]() as session:
            try:
                user = await authenticate(
                    session=session, login=login, password=password, clock=app[clock_key], hasher=app[hasher_key]
                )
                actor = await actor_for(session=session, user=user)
            finally:
                # Failure counters persist even though the sign-in fails (lockout works).
                await session.commit()
    except DomainError as exc:
        status = 429 if exc.code == "too_many_login_attempts" else 401
        log.info("console sign-in refused", extra={"status": status, "client": request.remote})
        message = (
            "Too many failed sign-ins. Wait a while and try again." if status == 429 else "Wrong username or password."
        )
        return _login_page(request, error=translate(lang, message), status=status, login=login)
    if actor.role not in STAFF:
        message = "The console is for school staff. Learners use the app, USSD or SMS."
        return _login_page(request, error=translate(lang, message), status=403, login=login)
    store = app[admin_sessions_key]
    previous = await store.load(request.cookies.get(COOKIE))
    if previous is not None:  # signing in again ends whatever session this browser held
        await store.end(previous)
    admin_session = await store.create(user_id=user.id, username=user.username, lang=lang)
    await _audit(request, actor, "auth.sign_in")
    response = web.Response(status=303, headers={"Location": safe_next(str(form.get("next", "/admin")))})
    response.set_cookie(
        COOKIE, admin_session.id, httponly=True, samesite="Lax", secure=secure_cookies(request), path="/admin"
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


async def _audit(request: web.Request, actor: Actor, action: str) -> None:
    async with request.app[sessionmaker_key]() as session, session.begin():
        await audit.record(
            session=session,
            actor=actor,
            action=action,
            target_type="user",
            target_id=str(actor.user_id),
            institution_id=actor.institution_id,
            after={"client": request.remote},
            request_id=request.get(request_id_key),
            now=request.app[clock_key].now(),
        )


@routes.post("/admin/logout")
async def logout(page: Page) -> web.StreamResponse:
    await page.app[admin_sessions_key].end(page.session)
    await _audit(page.request, page.actor, "auth.sign_out")
    response = web.Response(status=303, headers={"Location": "/admin/login"})
    response.del_cookie(COOKIE, path="/admin")
    return response


@routes.post("/admin/language")
async def set_language(page: Page) -> web.StreamResponse:
    lang = str(page.form.get("lang", "en"))
    if lang in LANGUAGES:
        page.session.lang = lang
    response = await page.redirect(safe_next(str(page.form.get("back", "/admin"))))
    secure = secure_cookies(page.request)
    response.set_cookie(LANG_COOKIE, page.session.lang, httponly=True, samesite="Lax", secure=secure, path="/admin")
    return response


def public_routes() -> list[web.RouteDef]:
    return [web.get("/admin/login", login_form), web.post("/admin/login", login_submit)]
