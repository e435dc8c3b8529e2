"""Signing in and out of the console, and choosing its language."""

from __future__ import annotations

import hmac
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from lms_domain.auth.service import actor_for, authenticate
from lms_domain.errors import DomainError
from server.admin.i18n import LANGUAGES, translate
from server.admin.menu import STAFF
from server.admin.sessions import COOKIE, new_token
from server.admin.views import SECURITY_HEADERS, AdminRoutes, Page, same_origin, signed_in
from server.keys import admin_sessions_key, clock_key, hasher_key, sessionmaker_key, settings_key

routes = AdminRoutes()
LOGIN_CSRF_COOKIE = "somo_admin_login"
LANG_COOKIE = "somo_admin_lang"


def _safe_next(target: str) -> str:
    """Only a path inside the console: never an open redirect to another site."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin"


def _secure_cookie(request: web.Request) -> bool:
    return request.secure or request.app[settings_key].http.behind_https


def _login_lang(request: web.Request) -> str:
    lang = request.query.get("lang") or request.cookies.get(LANG_COOKIE, "en")
    return lang if lang in LANGUAGES else "en"


def _login_page(request: web.Request, *, error: str = "", status: int = 200, login: str = "") -> web.Response:
    lang = _login_lang(request)
    # Before sign-in there is no session to hold a CSRF token: a double-submitted cookie
    # stops another site from signing a browser in to an account of its choosing.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    response = aiohttp_jinja2.render_template(
        "admin/login.html",
        request,
        {
            "_": lambda text: translate(lang, text),
            "lang": lang,
            "csrf": token,
            "error": error,
            "login": login,
            "next": _safe_next(request.query.get("next", "/admin")),
        },
        status=status,
    )
    secure = _secure_cookie(request)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="Strict", secure=secure, path="/admin")
    response.set_cookie(LANG_COOKIE, lang, httponly=True, samesite="Lax", secure=secure, path="/admin")
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


async def login_form(request: web.Request) -> web.StreamResponse:
    if await signed_in(request) is not None:
        return web.Response(status=303, headers={"Location": _safe_next(request.query.get("next", "/admin"))})
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang = _login_lang(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not same_origin(request) or not hmac.compare_digest(cookie, str(form.get("_csrf", ""))):
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
        message = (
            "Too many failed sign-ins. Wait a while and try again." if status == 429 else "Wrong username or password."
        )
        return _login_page(request, error=translate(lang, message), status=status, login=login)
    if actor.role not in STAFF:
        message = "The console is for school staff. Learners use the app, USSD or SMS."
        return _login_page(request, error=translate(lang, message), status=403, login=login)
    admin_session = await app[admin_sessions_key].create(user_id=user.id, username=user.username, lang=lang)
    response = web.Response(status=303, headers={"Location": _safe_next(str(form.get("next", "/admin")))})
    response.set_cookie(
        COOKIE, admin_session.id, httponly=True, samesite="Lax", secure=_secure_cookie(request), path="/admin"
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/admin")
    return response


@routes.post("/admin/logout")
async def logout(page: Page) -> web.StreamResponse:
    await page.app[admin_sessions_key].end(page.session)
    response = web.Response(status=303, headers={"Location": "/admin/login"})
    response.del_cookie(COOKIE, path="/admin")
    return response


@routes.post("/admin/language")
async def set_language(page: Page) -> web.StreamResponse:
    lang = str(page.form.get("lang", "en"))
    if lang in LANGUAGES:
        page.session.lang = lang
    back = str(page.form.get("back", "/admin"))
    response = await page.redirect(_safe_next(back))
    response.set_cookie(LANG_COOKIE, page.session.lang, httponly=True, samesite="Lax", path="/admin")
    return response


def public_routes() -> list[web.RouteDef]:
    return [web.get("/admin/login", login_form), web.post("/admin/login", login_submit)]


def login_url(next_path: str) -> str:
    return "/admin/login?" + urlencode({"next": next_path})
