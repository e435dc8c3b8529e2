"""Wiring of the admin console: templates, filters, static files, sign-in and every page.

Templates are Jinja2 through aiohttp-jinja2; the little script and the styles are served
from this package, never a CDN, since schools and operators may be offline.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from server.admin.sessions import SessionStore
from server.admin.views import NAIROBI, AdminRoutes, rendering_csrf, wrap
from server.keys import admin_sessions_key, kv_key

STATIC_DIR = Path(__file__).parent / "static"


def format_money(minor: int | None, currency: str = "KES") -> str:
    """Minor units as ``KES 1,160.00``: integer arithmetic, no float rounding."""
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(int(minor)), 100)
    return f"{currency} {sign}{whole:,}.{cents:02d}"


def format_local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored UTC time as people in Kenya read it."""
    if value is None:
        return ""
    return value.astimezone(NAIROBI).strftime(fmt)


def format_json(value: Any) -> str:
    if isinstance(value, bytes | str):
        try:
            value = json.loads(value)
        except ValueError:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


async def admin_sessions_ctx(app: web.Application) -> AsyncIterator[None]:
    app[admin_sessions_key] = SessionStore(app[kv_key])
    yield


def all_routes() -> list[AdminRoutes]:
    from server.admin.pages import (
        audit_log,
        content,
        dashboard,
        edge_nodes,
        login,
        money,
        operations,
        people,
        reconciliation,
    )

    return [
        login.routes,
        dashboard.routes,
        people.routes,
        content.routes,
        money.routes,
        reconciliation.routes,
        operations.routes,
        edge_nodes.routes,
        audit_log.routes,
    ]


def setup_admin(app: web.Application) -> None:
    """Templates, static files, sign-in and every console page. Call after the key-value
    store's cleanup context is added: the session store is built on it."""
    from server.admin.pages.login import public_routes

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("server.admin", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = format_money
    env.filters["local"] = format_local
    env.filters["pretty_json"] = format_json
    env.globals["csrf_token"] = rendering_csrf.get
    app.cleanup_ctx.append(admin_sessions_ctx)
    app.router.add_static("/admin/static", STATIC_DIR, name="admin_static", append_version=True)
    app.router.add_routes(public_routes())
    for area in all_routes():
        for method, path, handler, roles in area.routes:
            app.router.add_route(method, path, wrap(handler, method, roles))
