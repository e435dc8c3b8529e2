"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

from aiohttp import web

from lms_domain.clock import Clock, SystemClock
from lms_domain.security import DEFAULT_HASHER, Hasher
from server.api import PREFIX, all_apis, health
from server.api.docs import add_docs_routes
from server.api.openapi import build_openapi
from server.api.registry import register
from server.contexts import database_ctx, kv_ctx
from server.keys import certificate_renderer_key, clock_key, hasher_key, openapi_key, settings_key
from server.middlewares import problem_middleware, request_id_middleware
from server.pdf.certificate import FpdfCertificateRenderer
from server.settings import Settings

MAX_BODY_BYTES = 2 * 1024 * 1024
API_VERSION = "1.0.0"


def create_app(settings: Settings, *, clock: Clock | None = None, hasher: Hasher | None = None) -> web.Application:
    # request_id first so every later layer (and the error body) carries the id;
    # problem_middleware innermost so it sees the handler's exceptions directly.
    app = web.Application(middlewares=[request_id_middleware, problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[settings_key] = settings
    app[clock_key] = clock or SystemClock()
    app[certificate_renderer_key] = FpdfCertificateRenderer()
    app[hasher_key] = hasher or DEFAULT_HASHER
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(kv_ctx)
    app.add_routes(health.routes)
    apis = all_apis()
    register(app, apis, prefix=PREFIX)
    app[openapi_key] = build_openapi(
        apis, prefix=PREFIX, title="Somo API", version=API_VERSION, server_url=settings.http.public_url
    )
    add_docs_routes(app)
    return app
