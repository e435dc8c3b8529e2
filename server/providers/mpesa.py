"""One Daraja gateway per shortcode, sharing one outbound HTTP session and the app's clock."""

from __future__ import annotations

import uuid

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.payments.models import Provider, ProviderAccount, ProviderAccountKind
from server.providers.daraja import DarajaGateway
from server.settings import PaymentsSettings


class MpesaGateways:
    """The gateway for an institution: its active ``stk_push`` account's shortcode, else the
    settings' shortcode. Credentials come from settings; the base URL is the simulator's until
    real Daraja environments are configured per ``ProviderAccount``."""

    def __init__(self, settings: PaymentsSettings, http: aiohttp.ClientSession, clock: Clock) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._by_shortcode: dict[str, DarajaGateway] = {}

    def for_shortcode(self, shortcode: str) -> DarajaGateway:
        """The cached gateway of ``shortcode`` (one token cache per shortcode)."""
        gateway = self._by_shortcode.get(shortcode)
        if gateway is None:
            settings = self._settings
            gateway = DarajaGateway(
                base_url=settings.simulator_url,
                consumer_key=settings.mpesa_consumer_key.get_secret_value(),
                consumer_secret=settings.mpesa_consumer_secret.get_secret_value(),
                shortcode=shortcode,
                passkey=settings.mpesa_passkey.get_secret_value(),
                http=self._http,
                clock=self._clock,
            )
            self._by_shortcode[shortcode] = gateway
        return gateway

    @property
    def default(self) -> DarajaGateway:
        return self.for_shortcode(self._settings.mpesa_shortcode)

    async def for_institution(self, session: AsyncSession, institution_id: uuid.UUID) -> DarajaGateway:
        shortcode = await session.scalar(
            sa.select(ProviderAccount.shortcode)
            .where(
                ProviderAccount.institution_id == institution_id,
                ProviderAccount.provider == Provider.MPESA,
                ProviderAccount.kind == ProviderAccountKind.STK_PUSH,
                ProviderAccount.is_active.is_(True),
            )
            .order_by(ProviderAccount.created_at, ProviderAccount.id)
            .limit(1)
        )
        return self.for_shortcode(shortcode or self._settings.mpesa_shortcode)
