"""SMS commands from learners' phones: PROGRESS, QUIZ, RENEW, STOP, START and HELP, with
their Kiswahili keywords (MAENDELEO, JARIBIO, LIPA, SIMAMISHA, ANZA, MSAADA).

An inbound SMS is stored by the endpoint before anything else; this module acts on the
stored row once (a row already processed is left alone), and answers by SMS through the
``SmsSender`` port. ``RENEW 2`` picks the second profile on a shared phone, numbered as the
USSD menu numbers them. A reply to a command is sent even after STOP: the learner asked.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.errors import DomainError
from lms_domain.i18n import Language
from lms_domain.learning.summaries import learner_subscriptions, progress_report
from lms_domain.messaging.models import InboundSms, InboundStatus
from lms_domain.money import Money
from lms_domain.notifications.gsm import to_gsm7
from lms_domain.notifications.models import NotificationChannel
from lms_domain.notifications.ports import SmsSender
from lms_domain.notifications.preferences import set_sms_opt_out
from lms_domain.notifications.service import REPLY_EVENT, Senders, deliver, log_row, queue_notification
from lms_domain.payments.ports import Gateways
from lms_domain.payments.renewals import RENEWABLE, approve_renewal, provider_for
from lms_domain.phones import Network, network_from_code, normalize_msisdn
from lms_domain.tenancy.phone_access import Profile, profiles_on_phone
from ussd.menus.account import PROVIDER_NAMES, progress_lines, renewal_refusal
from ussd.texts import text

log = logging.getLogger("somo.sms")

KEYWORDS: dict[str, tuple[str, Language | None]] = {
    "PROGRESS": ("progress", None),
    "MAENDELEO": ("progress", Language.SW),
    "QUIZ": ("quiz", None),
    "JARIBIO": ("quiz", Language.SW),
    "MTIHANI": ("quiz", Language.SW),
    "RENEW": ("renew", None),
    "LIPA": ("renew", Language.SW),
    "STOP": ("stop", None),
    "SIMAMISHA": ("stop", Language.SW),
    "ACHA": ("stop", Language.SW),
    "START": ("start", None),
    "ANZA": ("start", Language.SW),
    "HELP": ("help", None),
    "MSAADA": ("help", Language.SW),
}
SMS_REFUSALS = {"wait": "sms.renew_wait", "failed": "sms.renew_failed", "not_renewable": "sms.renew_none"}
REPLY_MAX = 306  # two GSM-7 parts: progress for several courses may need the second


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # progress, quiz, renew, stop, start, help
    keyword: str
    language: Language | None  # the keyword's own language, if it has one
    number: int | None  # RENEW 2: the second profile


def parse_command(raw: str) -> Command:
    """The command in an SMS; anything unrecognised is HELP, in the language of its keyword."""
    words = raw.strip().upper().replace(",", " ").replace(".", " ").split()
    keyword = words[0] if words else ""
    name, language = KEYWORDS.get(keyword, ("help", None))
    number = (
        int(words[1]) if len(words) > 1 and words[1].isascii() and words[1].isdigit() and len(words[1]) <= 2 else None
    )
    return Command(name=name, keyword=keyword if keyword in KEYWORDS else "HELP", language=language, number=number)


class SmsCommands:
    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock,
        gateways: Gateways,
        sender: SmsSender,
        service_code: str,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._gateways = gateways
        self._sender = sender
        self._code = service_code

    async def process(self, inbound_id: uuid.UUID) -> None:
        """Act on one stored inbound SMS and answer it. Never raises: a failure is recorded on
        the row, which stays for an operator (and the pending-messages job) to see."""
        try:
            await self._process(inbound_id)
        except Exception as exc:
            log.exception("inbound sms failed", extra={"inbound_id": str(inbound_id)})
            async with self._sessions() as session, session.begin():
                row = await session.get(InboundSms, inbound_id)
                if row is not None and row.status is InboundStatus.RECEIVED:
                    row.status, row.error, row.processed_at = InboundStatus.FAILED, repr(exc)[:500], self._clock.now()

    async def _process(self, inbound_id: uuid.UUID) -> None:
        async with self._sessions() as session:
            row = await session.get(InboundSms, inbound_id)
            if row is None or row.status is not InboundStatus.RECEIVED:
                return
            sender, at_id, body, network_code = row.sender, row.at_id, row.text, row.network_code
            phone = normalize_msisdn(sender)
            profiles = await profiles_on_phone(session=session, e164=phone)
        command = parse_command(body)
        reply, learner = await self._answer(command, phone, profiles, network_from_code(network_code))
        reply = to_gsm7(reply)[:REPLY_MAX]
        language = command.language or (learner.language if learner else Language.EN)
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            row = await session.get(InboundSms, inbound_id, populate_existing=True)
            if row is None or row.status is not InboundStatus.RECEIVED:
                return
            row.status, row.command, row.reply, row.processed_at = InboundStatus.PROCESSED, command.name, reply, now
            log_id = await queue_notification(
                session,
                log_row(
                    channel=NotificationChannel.SMS,
                    recipient=phone,
                    body=reply,
                    event=REPLY_EVENT,
                    language=language,
                    dedupe_key=f"sms-reply:{at_id}",
                    now=now,
                    learner_id=learner.learner_id if learner else None,
                    institution_id=learner.institution_id if learner else None,
                ),
            )
        if log_id is None:
            return
        await deliver(sessions=self._sessions, senders=Senders(sms=self._sender), log_id=log_id, clock=self._clock)

    async def _answer(
        self, command: Command, phone: str, profiles: list[Profile], network: Network | None
    ) -> tuple[str, Profile | None]:
        """The reply text, and the profile it is about (None for the phone as a whole)."""
        fallback = command.language or (profiles[0].language if profiles else Language.EN)
        if command.name == "help":
            return text(fallback, "sms.help", code=self._code), (profiles[0] if profiles else None)
        if command.name == "quiz":
            return text(fallback, "sms.quiz", code=self._code), (profiles[0] if profiles else None)
        if not profiles:
            return text(fallback, "sms.unknown_phone", code=self._code), None
        if command.name in ("stop", "start"):
            async with self._sessions() as session, session.begin():
                await set_sms_opt_out(
                    session=session,
                    learner_ids=[p.learner_id for p in profiles],
                    opted_out=command.name == "stop",
                    now=self._clock.now(),
                )
            return text(fallback, "sms.stopped" if command.name == "stop" else "sms.started"), profiles[0]
        if command.number is None and len(profiles) > 1:
            options = ", ".join(f"{command.keyword} {i} - {p.display_name}" for i, p in enumerate(profiles, start=1))
            return text(fallback, "sms.choose_profile", options=options), profiles[0]
        index = (command.number or 1) - 1
        if not 0 <= index < len(profiles):
            return text(fallback, "sms.no_such_profile", number=command.number), profiles[0]
        profile = profiles[index]
        language = command.language or profile.language
        if command.name == "progress":
            return await self._progress(profile, language), profile
        return await self._renew(profile, language, phone, network), profile

    async def _progress(self, profile: Profile, language: Language) -> str:
        async with self._sessions() as session:
            reports = await progress_report(session=session, learner_id=profile.learner_id)
        if not reports:
            return text(language, "sms.progress_none", name=profile.display_name)
        parts = progress_lines(language, reports)
        return f"{profile.display_name}: " + "; ".join(parts)

    async def _renew(self, profile: Profile, language: Language, phone: str, network: Network | None) -> str:
        name = profile.display_name
        async with self._sessions() as session:
            subs = await learner_subscriptions(session=session, learner_id=profile.learner_id)
        sub = next((s for s in subs if s.status in RENEWABLE), None)
        if sub is None:
            return text(language, "sms.renew_none", name=name)
        try:
            approval = await approve_renewal(
                sessions=self._sessions,
                subscription_id=sub.id,
                msisdn=phone,
                network=network,
                gateways=self._gateways,
                clock=self._clock,
            )
        except DomainError as refused:  # provider failures included
            log.info("sms renewal not started", extra={"code": refused.code})
            key = {"wait": "sms.renew_wait", "failed": "sms.renew_failed"}.get(
                renewal_refusal(refused), "sms.renew_none"
            )
            return text(language, key, name=name)
        if not approval.pushed:
            return text(language, "sms.renew_pending", name=name)
        provider = PROVIDER_NAMES[provider_for(phone, network)]
        return text(
            language,
            "sms.renew_started",
            name=name,
            provider=provider,
            amount=Money(sub.amount_minor, sub.currency).figure,
        )
