"""Home, progress, subscription and renewal, language and help."""

from __future__ import annotations

import logging
import uuid
from typing import ClassVar, Literal

from lms_domain.clock import to_nairobi
from lms_domain.errors import DomainError
from lms_domain.i18n import Language
from lms_domain.learning.summaries import CourseReport, SubscriptionBrief, learner_subscriptions, progress_report
from lms_domain.money import Money
from lms_domain.payments.models import Provider
from lms_domain.payments.ports import PaymentGatewayError
from lms_domain.payments.renewals import RENEWABLE, RenewalApproval, fire_renewal, prepare_renewal, provider_for
from lms_domain.tenancy.phone_access import set_language
from ussd.layout import clean
from ussd.menus.entry import entry_frame
from ussd.screens import Ctx, Deps, End, Go, Outcome, Prompt, Stay, View, choice, language_choice, numbered
from ussd.session_store import Frame
from ussd.texts import text

log = logging.getLogger("somo.ussd")

PROVIDER_NAMES = {Provider.MPESA: "M-Pesa", Provider.AIRTEL: "Airtel Money"}


def renewal_refusal(refused: DomainError) -> Literal["wait", "failed", "not_renewable"]:
    """Why an approval fired no prompt, as USSD and SMS both tell it: wait out the 2-minute
    rule, the provider failed, or there is nothing this channel can renew."""
    if refused.code == "renewal_push_too_soon":
        return "wait"
    return "failed" if isinstance(refused, PaymentGatewayError) else "not_renewable"


def progress_lines(language: Language, reports: list[CourseReport]) -> list[str]:
    """One line per course, shared by the USSD screen and the SMS reply."""
    lines = []
    for report in reports:
        line = text(language, "progress.line", course=clean(report.course.title(language)), percent=report.percent)
        if report.last_scores:
            line += text(language, "progress.scores", scores=",".join(f"{s}%" for s in report.last_scores))
        if report.certificate_code:
            line += text(language, "progress.cert", code=report.certificate_code)
        lines.append(line)
    return lines


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
            return End(ctx.help_text())
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
        lines = progress_lines(ctx.language, reports)
        return View(ctx.t("progress.title"), lines)

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        return Stay(ctx.t("error.choice"))


def _until(sub: SubscriptionBrief) -> str:
    return to_nairobi(sub.grace_until or sub.period_end).strftime("%d/%m/%Y")


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
            amount=Money(sub.amount_minor, sub.currency).figure,
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
                    "amount": Money(sub.amount_minor, sub.currency).figure,
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
        # The approval is recorded now, so the closing screen tells the truth (a prompt, or why
        # none); the prompt itself goes after the reply: an STK prompt arrives as a USSD push,
        # which would clash with this session while it is still open.
        provider = PROVIDER_NAMES[Provider(frame.args["provider"])]
        try:
            approval = await prepare_renewal(
                sessions=ctx.deps.sessions,
                subscription_id=uuid.UUID(frame.args["id"]),
                msisdn=ctx.hop.phone,
                network=ctx.hop.network,
                clock=ctx.deps.clock,
            )
        except DomainError as refused:
            return End(ctx.t("sub.wait" if renewal_refusal(refused) == "wait" else "sub.not_renewable"))
        if not approval.pushed:
            return End(ctx.t("sub.pending", provider=provider))
        ctx.deps.spawn(_fire(ctx.deps, approval), f"ussd-renewal:{approval.attempt.id}")
        return End(ctx.t("sub.prompt", provider=provider))


async def _fire(deps: Deps, approval: RenewalApproval) -> None:
    """Send the approved renewal's prompt. A failure is the attempt's outcome, recorded by the
    flow for dunning to follow up; nothing here may escape into the event loop."""
    try:
        await fire_renewal(sessions=deps.sessions, approval=approval, gateways=deps.gateways, clock=deps.clock)
    except DomainError as exc:  # provider failures included
        log.warning(
            "ussd renewal prompt not sent",
            extra={"attempt_id": str(approval.attempt.id), "error": getattr(exc, "code", type(exc).__name__)},
        )


class LanguageScreen(Prompt):
    name: ClassVar[str] = "language"
    prompt: ClassVar[str] = "language.choose"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        language = language_choice(value)
        if language is None:
            return Stay(ctx.t("error.choice"))
        async with ctx.deps.sessions() as session, session.begin():
            await set_language(session=session, learner_id=ctx.learner_id, language=language)
        ctx.state.language = language
        return Go(Frame(screen="home"), reset=True)
