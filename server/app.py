"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from lms_domain.clock import Clock, SystemClock
from lms_domain.security import DEFAULT_HASHER, Hasher
from server.admin.setup import setup_admin
from server.api import PREFIX, all_apis, callbacks, health
from server.api.docs import add_docs_routes
from server.api.openapi import build_openapi
from server.api.registry import register
from server.auth.verified import VerifiedTokens
from server.contexts import (
    central_sync_ctx,
    database_ctx,
    gateways_ctx,
    kv_ctx,
    notifiers_ctx,
    phone_channels_ctx,
)
from server.keys import (
    buckets_key,
    central_sync_key,
    certificate_renderer_key,
    clock_key,
    hasher_key,
    openapi_key,
    phone_channels_key,
    settings_key,
    verified_tokens_key,
)
from server.middlewares import problem_middleware, request_id_middleware
from server.pdf.certificate import FpdfCertificateRenderer
from server.ratelimit import rate_limit_middleware
from server.scheduler import scheduler_ctx
from server.settings import Settings
from sync.http import SERVER_HANDLER_ARGS, sync_routes
from ussd.http import phone_routes

MAX_BODY_BYTES = 2 * 1024 * 1024
API_VERSION = "1.0.0"
# Provider and AT callbacks and the USSD endpoint are never limited here: callbacks must always
# be stored, and USSD hops come from AT's gateway at a person's pace, one at a time per
# session (the engine's hop lock), so a limit would only end real sessions.
RATE_LIMITED_PREFIXES = ("/api/v1/", "/sync/")


def create_job_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    """What the scheduled jobs need and nothing else (no routes): the database, the store, the
    provider gateways and the senders, from the same cleanup contexts as the server, for
    ``somo worker`` and ``somo jobs run``."""
    app = web.Application()
    app[settings_key] = settings
    app[clock_key] = clock or SystemClock()
    for ctx in (database_ctx, kv_ctx, gateways_ctx, notifiers_ctx):
        app.cleanup_ctx.append(ctx)
    return app


def create_app(settings: Settings, *, clock: Clock | None = None, hasher: Hasher | None = None) -> web.Application:
    # request_id first so every later layer (and the error body) carries the id;
    # problem_middleware next so it maps every later exception, the rate limiter's 429 too;
    # the rate limiter before any handler work.
    middlewares: list[Middleware] = [request_id_middleware, problem_middleware]
    limits = settings.rate_limit
    if limits.enabled:
        middlewares.append(
            rate_limit_middleware(
                lambda app: app[buckets_key],
                prefixes=RATE_LIMITED_PREFIXES,
                per_client=(limits.per_client_rps, limits.per_client_burst),
                per_token=(limits.per_token_rps, limits.per_token_burst),
            )
        )
    app = web.Application(
        middlewares=middlewares, client_max_size=MAX_BODY_BYTES, handler_args=dict(SERVER_HANDLER_ARGS)
    )
    app[settings_key] = settings
    app[clock_key] = clock or SystemClock()
    app[certificate_renderer_key] = FpdfCertificateRenderer()
    app[hasher_key] = hasher or DEFAULT_HASHER
    app[verified_tokens_key] = VerifiedTokens()
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(central_sync_ctx)
    app.cleanup_ctx.append(kv_ctx)
    app.cleanup_ctx.append(gateways_ctx)
    app.cleanup_ctx.append(phone_channels_ctx)
    app.cleanup_ctx.append(notifiers_ctx)
    app.cleanup_ctx.append(scheduler_ctx)
    setup_admin(app)  # after kv_ctx: console sessions live in the key-value store
    # Last, so it is cleaned up first: callback settlement drains while the database is open.
    app.cleanup_ctx.append(callbacks.callback_tasks_ctx)
    app.add_routes(health.routes)
    app.add_routes(callbacks.routes)
    app.add_routes(phone_routes(lambda request: request.app[phone_channels_key]))
    app.add_routes(sync_routes(lambda request: request.app[central_sync_key]))
    apis = all_apis()
    register(app, apis, prefix=PREFIX)
    # A relative server URL: the docs page then calls whichever host served it (a school's
    # edge node, a laptop, the central server) instead of one configured address.
    app[openapi_key] = build_openapi(apis, prefix=PREFIX, title="Somo API", version=API_VERSION, server_url="/")
    add_docs_routes(app)
    return app
