"""Everything with a lifetime, as cleanup contexts with a single ``yield``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from lms_domain.access import Actor
from lms_domain.changefeed import SyncContext, install_change_capture
from lms_domain.changefeed.models import OutboxEntry
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.projections import open_projections
from server.auth.tokens import decode_access_token
from server.joblock import JobLocks
from server.keys import (
    buckets_key,
    central_sync_key,
    clock_key,
    engine_key,
    gateways_key,
    hasher_key,
    job_locks_key,
    kv_key,
    phone_channels_key,
    projections_key,
    read_sessionmaker_key,
    senders_key,
    sessionmaker_key,
    settings_key,
    sync_context_key,
)
from server.kv import KeyValueStore, MemoryStore, RedisStore
from server.providers.gateways import ProviderGateways
from server.ratelimit import Buckets, MemoryBuckets, RedisBuckets
from sync.http import CentralSync
from ussd.background import Background
from ussd.engine import UssdService
from ussd.http import PhoneChannels
from ussd.screens import Deps, QuizCache
from ussd.sms import SmsCommands

log = logging.getLogger("somo.server")


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    settings.database.ensure_sqlite_dir()
    engine = create_engine(settings.database.url, echo=settings.database.echo, pool_size=settings.database.pool_size)
    install_change_capture()
    sync_context = SyncContext(node_id=settings.sync.node_id, role=settings.sync.role, clock=app[clock_key])
    try:
        # Seed the HLC from what is stored, so a restart with a clock set back never
        # issues versions older than ones already handed out.
        async with engine.connect() as conn:
            floor = await conn.scalar(sa.select(sa.func.max(OutboxEntry.hlc)))
        sync_context.hlc.observe(int(floor or 0))
    except Exception as exc:  # the server starts anyway; /ready reports the database
        log.warning("database not reachable at start-up", extra={"error": str(exc)})
    app[engine_key] = engine
    app[sync_context_key] = sync_context
    app[sessionmaker_key] = make_sessionmaker(engine, sync_context)
    app[read_sessionmaker_key] = make_sessionmaker(engine, sync_context, read_only=True)
    app[projections_key] = projections = open_projections(engine)
    try:
        yield
    finally:
        await projections.close()
        await engine.dispose()


async def kv_ctx(app: web.Application) -> AsyncIterator[None]:
    url = app[settings_key].redis.url
    store: KeyValueStore
    buckets: Buckets
    if url:
        redis_store = RedisStore.from_url(url)
        store, buckets = redis_store, RedisBuckets(redis_store.client)
    else:
        store, buckets = MemoryStore(), MemoryBuckets()
    app[kv_key] = store
    app[buckets_key] = buckets
    yield
    await store.close()


async def gateways_ctx(app: web.Application) -> AsyncIterator[None]:
    """The provider gateways (Daraja, Airtel) and the one outbound HTTP session they share."""
    async with aiohttp.ClientSession() as http:
        app[gateways_key] = ProviderGateways(app[settings_key], http, app[clock_key])
        yield


async def phone_channels_ctx(app: web.Application) -> AsyncIterator[None]:
    """USSD and SMS over Africa's Talking. After the database, store and gateways (it uses
    them); closed before them, so a renewal prompt started after a closing screen finishes."""
    from server.providers.sms import AfricasTalkingSms

    settings = app[settings_key]
    background = Background()
    deps = Deps(
        sessions=app[sessionmaker_key],
        read_sessions=app[read_sessionmaker_key],
        store=app[kv_key],
        clock=app[clock_key],
        hasher=app[hasher_key],
        gateways=app[gateways_key],
        spawn=background.spawn,
        quizzes=QuizCache(app[read_sessionmaker_key], ttl_s=settings.ussd.quiz_cache_ttl_s),
        service_code=settings.ussd.service_code,
        sms_shortcode=settings.notifications.sms_shortcode,
        resume_ttl_s=settings.ussd.resume_ttl_s,
    )
    sender = AfricasTalkingSms.from_settings(settings)
    sms = SmsCommands(
        sessions=app[sessionmaker_key],
        clock=app[clock_key],
        gateways=app[gateways_key],
        sender=sender,
        service_code=settings.ussd.service_code,
    )
    app[phone_channels_key] = PhoneChannels(
        ussd=UssdService(deps, session_ttl_s=settings.ussd.session_ttl_s, deadline_s=settings.ussd.deadline_s),
        sms=sms,
        sessions=app[sessionmaker_key],
        clock=app[clock_key],
        background=background,
        sender=sender,
    )
    yield
    await background.close()


async def notifiers_ctx(app: web.Application) -> AsyncIterator[None]:
    """The senders notifications go out through, and the locks the scheduled jobs take.
    After the phone channels, where they run: their Africa's Talking sender is shared."""
    from server.notifiers import build_senders

    store = app[kv_key]
    phone = app.get(phone_channels_key)
    app[senders_key] = build_senders(app[settings_key], at_sms=phone.sender if phone is not None else None)
    app[job_locks_key] = JobLocks(app[engine_key], store.client if isinstance(store, RedisStore) else None)
    yield


async def central_sync_ctx(app: web.Application) -> AsyncIterator[None]:
    """The sync endpoints' dependencies, from the database context's sessions."""
    settings = app[settings_key]
    secret = settings.security.secret_key.get_secret_value()
    clock = app[clock_key]

    def learner_of(token: str) -> Actor:
        return decode_access_token(token, secret=secret, now=clock.now())[0]

    app[central_sync_key] = CentralSync(
        sessionmaker=app[sessionmaker_key],
        read_sessionmaker=app[read_sessionmaker_key],
        context=app[sync_context_key],
        clock=clock,
        secret=secret,
        learner_of=learner_of,
        asset_dir=settings.sync.asset_dir,
        batch_rows=settings.sync.batch_rows,
        batch_bytes=settings.sync.batch_bytes,
    )
    yield
