"""Registering each paybill's C2B URLs with Daraja: the one-time step without which M-Pesa never
tells us about a paybill payment. Production refuses a second registration ("Urls are already
registered"), which counts as done; the sandbox and the simulator accept it again."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
import sqlalchemy as sa

from lms_domain.clock import SystemClock
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.payments.models import Provider, ProviderAccount, ProviderAccountKind
from lms_domain.payments.ports import PaymentGatewayError
from server.providers.gateways import ProviderGateways
from server.settings import Settings

log = logging.getLogger("somo.paybills")
ALREADY_REGISTERED = "mpesa_c2b_urls_already_registered"


@dataclass(frozen=True, slots=True)
class Registration:
    shortcode: str
    outcome: str  # "registered", "already registered" or the provider's refusal


async def register_paybills(settings: Settings, *, shortcode: str | None = None) -> list[Registration]:
    """Register the confirmation and validation URLs of every active paybill account (or one)."""
    engine = create_engine(settings.database.url)
    try:
        async with make_sessionmaker(engine, None, read_only=True)() as session:
            rows = (
                await session.execute(
                    sa.select(ProviderAccount.shortcode, ProviderAccount.base_url, ProviderAccount.credentials_ref)
                    .where(
                        ProviderAccount.provider == Provider.MPESA,
                        ProviderAccount.kind == ProviderAccountKind.PAYBILL,
                        ProviderAccount.is_active.is_(True),
                    )
                    .order_by(ProviderAccount.shortcode)
                )
            ).all()
    finally:
        await engine.dispose()
    done: list[Registration] = []
    async with aiohttp.ClientSession() as http:
        gateways = ProviderGateways(settings, http, SystemClock())
        for row in rows:
            if shortcode is not None and row.shortcode != shortcode:
                continue
            gateway = gateways.daraja(row.shortcode, row.base_url, row.credentials_ref)
            try:
                await gateway.register_c2b_urls(
                    shortcode=row.shortcode,
                    confirmation_url=gateways.c2b_confirmation_url,
                    validation_url=gateways.c2b_validation_url,
                )
                outcome = "registered"
            except PaymentGatewayError as exc:
                outcome = "already registered" if exc.code == ALREADY_REGISTERED else f"refused: {exc.detail}"
            log.info("paybill C2B URLs", extra={"shortcode": row.shortcode, "outcome": outcome})
            done.append(Registration(row.shortcode, outcome))
    return done
