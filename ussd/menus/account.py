"""Home, progress, subscription and renewal, language and help."""

from __future__ import annotations

import logging
import uuid
from typing import ClassVar

from lms_domain.clock import to_nairobi
from lms_domain.errors import DomainError
from lms_domain.i18n import Language
from lms_domain.learning.summaries import SubscriptionBrief, learner_subscriptions, progress_report
from lms_domain.payments.models import Provider
from lms_domain.payments.ports import PaymentGatewayError
from lms_domain.payments.renewals import approve_renewal, provider_for
from lms_domain.phones import Network
from lms_domain.subscriptions.models import SubscriptionStatus
from lms_domain.tenancy.phone_access import set_language
from ussd.layout import clean
from ussd.menus.entry import entry_frame
from ussd.screens import Ctx, Deps, End, Go, Outcome, Stay, View, choice, numbered
from ussd.session_store import Frame

log = logging.getLogger("somo.ussd")

RENEWABLE = {
    SubscriptionStatus.ACTIVE,
    SubscriptionStatus.PAST_DUE,
    SubscriptionStatus.GRACE,
    SubscriptionStatus.UNPAID,
}
PROVIDER_NAMES = {Provider.MPESA: "M-Pesa", Provider.AIRTEL: "Airtel Money"}


def help_text(ctx: Ctx) -> str:
    return ctx.t("help.text", code=ctx.deps.service_code, shortcode=ctx.deps.sms_shortcode)


class HomeScreen:
    name: ClassVar[str] = "home"
    free_text: ClassVar[bool] = False
    ENTRIES: ClassVar[tuple[str, ...]] = ("quiz", "progress", "subscription", "language", "help", "switch")

    def _entries(self, ctx: Ctx) -> tuple[str, ...]:
        return self.ENTRIES if ctx.state.profiles > 1 else self.ENTRIES[:-1]

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        labels = [ctx.t(f"home.{entry}") for entry in self._entries(ctx)]
        return View(ctx.t("home.title", name=ctx.state.learner_name), numbered(labels))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        entries = self._entries(ctx)
        picked = choice(value, len(entries))
        if picked is None:
            return Stay(ctx.t("error.choice"))
        entry = entries[picked]
        if entry == "help":
            return End(help_text(ctx))
        if entry == "switch":
            return Go(await entry_frame(ctx), reset=True)
        return Go(Frame(screen={"quiz": "courses"}.get(entry, entry)))


class ProgressScreen:
    name: ClassVar[str] = "progress"
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        async with ctx.deps.read_sessions() as session:
            reports = await progress_report(session=session, learner_id=ctx.learner_id)
        if not reports:
            return View(ctx.t("progress.none"))
        lines = []
        for report in reports:
            line = ctx.t("progress.line", course=clean(report.course.title(ctx.language)), percent=report.percent)
            if report.last_scores:
                line += ctx.t("progress.scores", scores=",".join(f"{s}%" for s in report.last_scores))
            if report.certificate_code:
                line += ctx.t("progress.cert", code=report.certificate_code)
            lines.append(line)
        return View(ctx.t("progress.title"), lines)

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        return Stay(ctx.t("error.choice"))


def _until(sub: SubscriptionBrief) -> str:
    return to_nairobi(sub.grace_until or sub.period_end).strftime("%d/%m/%Y")


def _shillings(amount_minor: int) -> str:
    return f"{amount_minor // 100:,}" if amount_minor % 100 == 0 else f"{amount_minor / 100:,.2f}"


class SubscriptionScreen:
    """The learner's subscription (or a choice among several), with Renew now."""

    name: ClassVar[str] = "subscription"
    free_text: ClassVar[bool] = False

    async def _subs(self, ctx: Ctx) -> list[SubscriptionBrief]:
        async with ctx.deps.read_sessions() as session:
            return await learner_subscriptions(session=session, learner_id=ctx.learner_id)

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        subs = await self._subs(ctx)
        if not subs:
            return View(ctx.t("sub.none"))
        if len(subs) > 1 and "id" not in frame.args:
            return View(ctx.t("sub.choose"), numbered([clean(s.product.title(ctx.language)) for s in subs]))
        sub = next((s for s in subs if str(s.id) == frame.args.get("id")), subs[0])
        detail = ctx.t(
            "sub.detail",
            product=clean(sub.product.title(ctx.language)),
            status=ctx.t(f"status.{sub.status.value}"),
            until=_until(sub),
            amount=_shillings(sub.amount_minor),
            interval=ctx.t(f"interval.{sub.interval.value}"),
        )
        return View(detail, numbered([ctx.t("sub.renew")]) if sub.status in RENEWABLE else [])

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        subs = await self._subs(ctx)
        if len(subs) > 1 and "id" not in frame.args:
            picked = choice(value, len(subs))
            if picked is None:
                return Stay(ctx.t("error.choice"))
            return Go(Frame(screen="subscription", args={"id": str(subs[picked].id)}))
        sub = next((s for s in subs if str(s.id) == frame.args.get("id")), subs[0] if subs else None)
        if sub is None or sub.status not in RENEWABLE or choice(value, 1) != 0:
            return Stay(ctx.t("error.choice"))
        provider = provider_for(ctx.hop.phone, ctx.hop.network)
        return Go(
            Frame(
                screen="renew_confirm",
                args={
                    "id": str(sub.id),
                    "amount": _shillings(sub.amount_minor),
                    "product": clean(sub.product.title(ctx.language)),
                    "provider": provider.value,
                },
            )
        )


def local_number(e164: str) -> str:
    return "0" + e164[4:] if e164.startswith("+254") else e164


class RenewConfirmScreen:
    name: ClassVar[str] = "renew_confirm"
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        args = frame.args
        return View(
            ctx.t(
                "sub.confirm",
                amount=args["amount"],
                product=args["product"],
                phone=local_number(ctx.hop.phone),
                provider=PROVIDER_NAMES[Provider(args["provider"])],
            )
        )

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        picked = choice(value, 2)
        if picked is None:
            return Stay(ctx.t("error.choice"))
        if picked == 1:
            return End(ctx.t("sub.cancelled"))
        # The reply goes first and the prompt after it: an STK prompt arrives as a USSD push,
        # which would clash with this session while it is still open.
        subscription_id = uuid.UUID(frame.args["id"])
        ctx.deps.spawn(
            _renew(ctx.deps, subscription_id, ctx.hop.phone, ctx.hop.network),
            f"ussd-renewal:{subscription_id}",
        )
        return End(ctx.t("sub.prompt", provider=PROVIDER_NAMES[Provider(frame.args["provider"])]))


async def _renew(deps: Deps, subscription_id: uuid.UUID, phone: str, network: Network | None) -> None:
    """Fire the approved renewal's prompt; failures are the attempt's outcome, already recorded
    by the flow, and dunning follows them up. Nothing here may escape into the event loop."""
    try:
        approval = await approve_renewal(
            sessions=deps.sessions,
            subscription_id=subscription_id,
            msisdn=phone,
            network=network,
            gateways=deps.gateways,
            clock=deps.clock,
        )
        log.info(
            "ussd renewal approved",
            extra={"subscription_id": str(subscription_id), "pushed": approval.pushed},
        )
    except (DomainError, PaymentGatewayError) as exc:
        log.warning(
            "ussd renewal not started",
            extra={"subscription_id": str(subscription_id), "error": getattr(exc, "code", type(exc).__name__)},
        )


class LanguageScreen:
    name: ClassVar[str] = "language"
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        return View(ctx.t("language.title"))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        picked = choice(value, 2)
        if picked is None:
            return Stay(ctx.t("error.choice"))
        language = (Language.EN, Language.SW)[picked]
        async with ctx.deps.sessions() as session, session.begin():
            await set_language(session=session, learner_id=ctx.learner_id, language=language)
        ctx.state.language = language
        return Go(Frame(screen="home"), reset=True)
