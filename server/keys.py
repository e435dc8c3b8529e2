"""Every typed application and request key, declared in one place."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.assessments.ports import CertificateRenderer
from lms_domain.changefeed import SyncContext
from lms_domain.clock import Clock
from lms_domain.notifications.service import Senders
from lms_domain.projections import Projections
from lms_domain.security import Hasher
from server.admin.sessions import SessionStore
from server.auth.verified import VerifiedTokens
from server.inbox_workers import InboxWorkers
from server.joblock import JobLocks
from server.kv import KeyValueStore
from server.providers.gateways import ProviderGateways
from server.ratelimit import Buckets
from server.settings import Settings
from sync.http import CentralSync
from ussd.http import PhoneChannels

settings_key = web.AppKey("settings", Settings)
clock_key = web.AppKey("clock", Clock)
engine_key = web.AppKey("engine", AsyncEngine)
sessionmaker_key = web.AppKey("sessionmaker", async_sessionmaker[AsyncSession])
read_sessionmaker_key = web.AppKey("read_sessionmaker", async_sessionmaker[AsyncSession])
# Session-free reads for hot lists (see lms_domain.projections).
projections_key = web.AppKey("projections", Projections)
sync_context_key = web.AppKey("sync_context", SyncContext)
kv_key = web.AppKey("kv", KeyValueStore)
buckets_key = web.AppKey("buckets", Buckets)
certificate_renderer_key = web.AppKey("certificate_renderer", CertificateRenderer)
hasher_key = web.AppKey("hasher", Hasher)
gateways_key = web.AppKey("gateways", ProviderGateways)
# Callback processing that outlives its request: drained before the database closes.
callback_tasks_key = web.AppKey("callback_tasks", InboxWorkers)
# USSD and SMS (Africa's Talking): the menu engine, SMS commands and their background work.
phone_channels_key = web.AppKey("phone_channels", PhoneChannels)

openapi_key = web.AppKey("openapi", dict[str, Any])
verified_tokens_key = web.AppKey("verified_tokens", VerifiedTokens)

request_id_key = web.RequestKey("request_id", str)
# The notifier (SMS and email senders) and the scheduled jobs' cross-process locks.
senders_key = web.AppKey("senders", Senders)
job_locks_key = web.AppKey("job_locks", JobLocks)
# The sync endpoints' dependencies (sessions, clock, secret, the asset store).
central_sync_key = web.AppKey("central_sync", CentralSync)
# The admin console's sign-in sessions (kept in the key-value store).
admin_sessions_key = web.AppKey("admin_sessions", SessionStore)
