"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

from aiohttp import web

from lms_domain.clock import Clock, SystemClock
from server.api import health
from server.contexts import database_ctx, kv_ctx
from server.keys import certificate_renderer_key, clock_key, settings_key
from server.middlewares import problem_middleware, request_id_middleware
from server.pdf.certificate import FpdfCertificateRenderer
from server.settings import Settings

MAX_BODY_BYTES = 2 * 1024 * 1024


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    # request_id first so every later layer (and the error body) carries the id;
    # problem_middleware innermost so it sees the handler's exceptions directly.
    app = web.Application(middlewares=[request_id_middleware, problem_middleware], client_max_size=MAX_BODY_BYTES)
    app[settings_key] = settings
    app[clock_key] = clock or SystemClock()
    app[certificate_renderer_key] = FpdfCertificateRenderer()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(kv_ctx)
    app.add_routes(health.routes)
    return app
