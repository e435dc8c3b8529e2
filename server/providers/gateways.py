"""The provider gateways of each institution, built from its ``ProviderAccount`` rows plus
settings, sharing one outbound HTTP session and the app's clock.

An institution's active account decides the shortcode (or Airtel client), the base URL and the
credentials: ``ProviderAccount.credentials_ref`` names an entry of
``SOMO_PAYMENTS__CREDENTIALS__<ref>__*``, whose empty fields fall back to the platform's own
credentials. With no account, the platform's settings serve (one-school deployments, demos).
Gateways are cached per (base URL, shortcode or client, credentials ref), so each keeps its
single-flight token cache: minting a second Daraja token would kill the first.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import aiohttp
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.clock import Clock
from lms_domain.payments.models import Provider, ProviderAccount, ProviderAccountKind
from server.providers.airtel import AirtelGateway
from server.providers.daraja import DarajaGateway
from server.settings import PaymentsSettings, ProviderCredentials, Settings


@dataclass(frozen=True, slots=True)
class _Account:
    shortcode: str
    base_url: str
    credentials_ref: str


def _secret(own: SecretStr | None, fallback: SecretStr) -> str:
    return (own or fallback).get_secret_value()


class ProviderGateways:
    """``lms_domain.payments.ports.Gateways`` for the server: per-institution gateways."""

    def __init__(self, settings: Settings, http: aiohttp.ClientSession, clock: Clock) -> None:
        self._payments = settings.payments
        self._http = http
        self._clock = clock
        base = settings.http.public_url.rstrip("/")
        secret = settings.payments.callback_secret.get_secret_value()
        self.stk_callback_url = f"{base}/callbacks/mpesa/{secret}/stk"
        self.org_result_url = f"{base}/callbacks/mpesa/{secret}/result"
        self.org_timeout_url = f"{base}/callbacks/mpesa/{secret}/timeout"
        # Daraja refuses C2B URLs containing "mpesa" (§7.1), hence "paybill".
        self.c2b_confirmation_url = f"{base}/callbacks/paybill/{secret}/confirmation"
        self.c2b_validation_url = f"{base}/callbacks/paybill/{secret}/validation"
        # Airtel's callback URL lives on its portal; the simulator is told it per request.
        self.airtel_callback_url: str | None = (
            f"{base}/callbacks/airtel/{secret}" if not settings.payments.airtel_base_url else None
        )
        self._daraja: dict[tuple[str, str, str], DarajaGateway] = {}
        self._airtel: dict[tuple[str, str], AirtelGateway] = {}

    @property
    def settings(self) -> PaymentsSettings:
        return self._payments

    def _credentials(self, ref: str) -> ProviderCredentials:
        return self._payments.credentials.get(ref) or ProviderCredentials()

    async def _account(
        self, session: AsyncSession, institution_id: uuid.UUID, provider: Provider, kind: ProviderAccountKind
    ) -> _Account | None:
        row = (
            await session.execute(
                sa.select(ProviderAccount.shortcode, ProviderAccount.base_url, ProviderAccount.credentials_ref)
                .where(
                    ProviderAccount.institution_id == institution_id,
                    ProviderAccount.provider == provider,
                    ProviderAccount.kind == kind,
                    ProviderAccount.is_active.is_(True),
                )
                .order_by(ProviderAccount.created_at, ProviderAccount.id)
                .limit(1)
            )
        ).first()
        return _Account(row.shortcode, row.base_url, row.credentials_ref) if row is not None else None

    def daraja(self, shortcode: str, base_url: str = "", credentials_ref: str = "") -> DarajaGateway:
        """The cached Daraja gateway of one shortcode, base URL and credential set."""
        url = base_url or self._payments.mpesa_base_url or self._payments.simulator_url
        key = (url, shortcode, credentials_ref)
        gateway = self._daraja.get(key)
        if gateway is None:
            own, pay = self._credentials(credentials_ref), self._payments
            gateway = DarajaGateway(
                base_url=url,
                consumer_key=_secret(own.consumer_key, pay.mpesa_consumer_key),
                consumer_secret=_secret(own.consumer_secret, pay.mpesa_consumer_secret),
                shortcode=shortcode,
                passkey=_secret(own.passkey, pay.mpesa_passkey),
                http=self._http,
                clock=self._clock,
                initiator=own.initiator or pay.mpesa_initiator,
                security_credential=_secret(own.security_credential, pay.mpesa_security_credential),
            )
            self._daraja[key] = gateway
        return gateway

    @property
    def default_daraja(self) -> DarajaGateway:
        return self.daraja(self._payments.mpesa_shortcode)

    async def mpesa_for(self, session: AsyncSession, institution_id: uuid.UUID) -> DarajaGateway:
        account = await self._account(session, institution_id, Provider.MPESA, ProviderAccountKind.STK_PUSH)
        if account is None:
            return self.default_daraja
        return self.daraja(account.shortcode, account.base_url, account.credentials_ref)

    async def mpesa_org_for(self, session: AsyncSession, institution_id: uuid.UUID) -> DarajaGateway:
        """Reversal and Transaction Status run against the shortcode that took the money; the
        STK shortcode serves when the school has no separate paybill account."""
        account = await self._account(session, institution_id, Provider.MPESA, ProviderAccountKind.PAYBILL)
        if account is None:
            return await self.mpesa_for(session, institution_id)
        return self.daraja(account.shortcode, account.base_url, account.credentials_ref)

    def airtel(self, base_url: str = "", credentials_ref: str = "") -> AirtelGateway:
        url = base_url or self._payments.airtel_base_url or self._payments.simulator_url
        key = (url, credentials_ref)
        gateway = self._airtel.get(key)
        if gateway is None:
            own, pay = self._credentials(credentials_ref), self._payments
            gateway = AirtelGateway(
                base_url=url,
                client_id=_secret(own.client_id, pay.airtel_client_id),
                client_secret=_secret(own.client_secret, pay.airtel_client_secret),
                http=self._http,
                clock=self._clock,
            )
            self._airtel[key] = gateway
        return gateway

    async def airtel_for(self, session: AsyncSession, institution_id: uuid.UUID) -> AirtelGateway:
        account = await self._account(session, institution_id, Provider.AIRTEL, ProviderAccountKind.COLLECTION)
        if account is None:
            return self.airtel()
        return self.airtel(account.base_url, account.credentials_ref)
