"""SMS commands end to end: a learner texts the shortcode through the AT simulator, AT posts
the inbound SMS to us, we store it once, act on it and reply through the africastalking SDK
to the simulator, whose delivery reports come back and are stored once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from lms_domain.errors import Conflict
from lms_domain.messaging.models import InboundSms, InboundStatus, SmsDeliveryReport
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationPreference,
    NotificationStatus,
)
from lms_domain.notifications.preferences import channel_allowed
from lms_domain.payments.models import PaymentIntent
from lms_domain.payments.ports import GatewayConfigurationError, GatewayUnavailable
from lms_domain.subscriptions.models import RenewalOutcome, SubscriptionRenewalAttempt
from server.keys import phone_channels_key
from server.seed import sid
from tests.ussd.conftest import AMINA, SHARED, UNDELIVERABLE, World
from ussd.menus.account import renewal_refusal
from ussd.sms import SMS_REFUSALS, parse_command


async def text_in(world: World, sender: str, body: str) -> dict[str, Any]:
    """The learner sends ``body``; returns the simulator's record of the inbound message."""
    response = await world.sim_client.post("/sim/at/inbound", json={"from": sender, "text": body})
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def replies_to(world: World, number: str, count: int) -> list[str]:
    """Wait for ``count`` replies to ``number`` at the simulator; return their texts."""
    for _ in range(400):
        await world.app[phone_channels_key].background.drain()
        sent = await (await world.sim_client.get("/sim/at/messages")).json()
        texts = [m["message"] for m in sent if m["to"] == number]
        if len(texts) >= count:
            return texts
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reply to {number}")


async def logged(world: World, number: str) -> list[NotificationLog]:
    async with world.makers() as session:
        rows = await session.scalars(
            sa.select(NotificationLog).where(NotificationLog.recipient == number).order_by(NotificationLog.created_at)
        )
        return list(rows)


async def settle(world: World, condition: Any, what: str) -> None:
    for _ in range(400):
        await world.app[phone_channels_key].background.drain()
        if await condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_progress_is_answered_by_sms_and_its_delivery_report_is_stored(world: World) -> None:
    await text_in(world, AMINA, "progress")
    [reply] = await replies_to(world, AMINA, 1)
    assert reply == "Amina Wanjiru: Form 2 Mathematics: 0% done"

    async def delivered() -> bool:
        rows = await logged(world, AMINA)
        return len(rows) == 1 and rows[0].status is NotificationStatus.DELIVERED

    await settle(world, delivered, "the delivery report")
    [entry] = await logged(world, AMINA)
    assert entry.event == "sms_reply" and entry.segments == 1 and entry.cost_minor == 80
    assert entry.provider_message_id and entry.learner_id == sid("learner", "amina")
    reports = await world.scalar(
        sa.select(sa.func.count(SmsDeliveryReport.id)).where(SmsDeliveryReport.message_id == entry.provider_message_id)
    )
    assert reports == 2  # Sent, then Success


async def test_an_inbound_sms_retried_by_at_is_stored_and_answered_once(world: World) -> None:
    form = {"from": AMINA, "to": "20880", "text": "HELP", "date": "2026-11-27 07:00:00", "id": "at-inbound-1"}
    answers = await asyncio.gather(*(world.client.post("/sms/africastalking/inbound", data=form) for _ in range(4)))
    stored = [(await answer.json())["stored"] for answer in answers]
    assert all(a.status == 200 for a in answers) and sorted(stored) == [False, False, False, True]
    texts = await replies_to(world, AMINA, 1)
    await asyncio.sleep(0.1)
    assert len(await replies_to(world, AMINA, 1)) == 1 == len(texts)
    row = await world.scalar(sa.select(InboundSms).where(InboundSms.at_id == "at-inbound-1"))
    assert row.status is InboundStatus.PROCESSED and row.command == "help"


async def test_a_swahili_keyword_on_a_shared_phone_asks_which_learner(world: World) -> None:
    await text_in(world, SHARED, "Maendeleo")
    [reply] = await replies_to(world, SHARED, 1)
    assert reply == (
        "Wanafunzi kadhaa wanatumia simu hii. Jibu MAENDELEO 1 - Baraka Otieno, MAENDELEO 2 - Zawadi Otieno."
    )
    await text_in(world, SHARED, "MAENDELEO 2")
    replies = await replies_to(world, SHARED, 2)
    assert replies[1] == "Zawadi Otieno: Hisabati Kidato cha Pili: 0% imekamilika", replies[1]
    await text_in(world, SHARED, "PROGRESS 7")
    replies = await replies_to(world, SHARED, 3)
    assert replies[2] == "There is no learner number 7 on this phone. Reply HELP."  # the first profile's language


async def test_renew_2_prompts_the_second_profile_once_and_respects_the_two_minute_rule(world: World) -> None:
    await text_in(world, SHARED, "RENEW 2")
    [started] = await replies_to(world, SHARED, 1)
    # Zawadi reads Kiswahili: an English keyword is answered in the profile's language.
    assert started == "Zawadi Otieno: utapokea ombi la M-Pesa la KES 300. Weka PIN yako kulipa."

    async def cancelled() -> bool:
        outcome = await world.scalar(
            sa.select(SubscriptionRenewalAttempt.outcome).where(
                SubscriptionRenewalAttempt.subscription_id == sid("subscription", "zawadi")
            )
        )
        return outcome is RenewalOutcome.FAILED  # 0700000002: the simulated customer cancels

    await settle(world, cancelled, "the cancelled prompt")
    await text_in(world, SHARED, "LIPA 2")
    wait = (await replies_to(world, SHARED, 2))[1]
    assert wait == "Zawadi Otieno: tafadhali subiri dakika 2 kabla ya kuomba ombi jingine."
    world.clock.advance(timedelta(minutes=2, seconds=1))
    await text_in(world, SHARED, "RENEW 2")
    again = (await replies_to(world, SHARED, 3))[2]
    assert again.startswith("Zawadi Otieno: utapokea ombi la M-Pesa")
    prompts = await world.scalar(
        sa.select(sa.func.count(PaymentIntent.id)).where(PaymentIntent.subscription_id == sid("subscription", "zawadi"))
    )
    assert prompts == 2
    baraka = await world.scalar(
        sa.select(sa.func.count(PaymentIntent.id)).where(PaymentIntent.learner_id == sid("learner", "baraka"))
    )
    assert baraka == 0


async def test_stop_opts_every_profile_on_the_phone_out_and_start_opts_back_in(world: World) -> None:
    await text_in(world, SHARED, "stop")
    [stopped] = await replies_to(world, SHARED, 1)
    assert stopped == "You will get no more Somo messages. Reply START to receive them again."
    async with world.makers() as session:
        for key in ("baraka", "zawadi"):
            assert not await channel_allowed(
                session=session, learner_id=sid("learner", key), channel=NotificationChannel.SMS, event="renewal_due"
            )
        assert await channel_allowed(
            session=session, learner_id=sid("learner", "amina"), channel=NotificationChannel.SMS, event="renewal_due"
        )
    await text_in(world, SHARED, "ANZA")
    started = (await replies_to(world, SHARED, 2))[1]
    assert started == "Ujumbe wa Somo umewashwa tena. Jibu SIMAMISHA kusitisha."
    async with world.makers() as session:
        assert await channel_allowed(
            session=session, learner_id=sid("learner", "zawadi"), channel=NotificationChannel.SMS, event="renewal_due"
        )
        assert await session.scalar(sa.select(sa.func.count(NotificationPreference.id))) == 2


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("quiz", "To take a quiz, dial *384*123# and choose 1."),
        ("JARIBIO", "Kufanya jaribio, piga *384*123# uchague 1."),
        ("what is this?", "Somo: reply PROGRESS for your progress"),
        ("MSAADA", "Somo: jibu MAENDELEO kuona maendeleo"),
    ],
)
async def test_help_and_quiz_keywords_answer_in_their_language(world: World, body: str, reply: str) -> None:
    await text_in(world, AMINA, body)
    [answer] = await replies_to(world, AMINA, 1)
    assert answer.startswith(reply), answer


async def test_an_unknown_phone_is_told_how_to_register(world: World) -> None:
    await text_in(world, "+254722000004", "RENEW")
    [answer] = await replies_to(world, "+254722000004", 1)
    assert answer == "This phone is not registered with Somo. Dial *384*123# to register."


async def test_delivery_reports_are_stored_once_and_a_failure_reaches_the_send_log(world: World) -> None:
    await text_in(world, UNDELIVERABLE, "HELP")
    await replies_to(world, UNDELIVERABLE, 1)

    async def failed() -> bool:
        rows = await logged(world, UNDELIVERABLE)
        return len(rows) == 1 and rows[0].status is NotificationStatus.FAILED

    await settle(world, failed, "the Failed delivery report")
    [entry] = await logged(world, UNDELIVERABLE)
    assert entry.error == "UserIsInactive"
    # AT retries a report it thinks we missed: stored once; and a late "Success" for the same
    # message does not turn a failure into a delivery.
    report = {"id": entry.provider_message_id, "status": "Failed", "failureReason": "UserIsInactive"}
    again = await world.client.post("/sms/africastalking/delivery", data=report)
    late = await world.client.post("/sms/africastalking/delivery", data={**report, "status": "Success"})
    assert (await again.json(), await late.json()) == ({"stored": False}, {"stored": True})
    [entry] = await logged(world, UNDELIVERABLE)
    assert entry.status is NotificationStatus.FAILED
    bad = await world.client.post("/sms/africastalking/delivery", data={"status": "Success"})
    assert bad.status == 422 and (await bad.json())["code"] == "delivery_report_invalid"
    bad = await world.client.post("/sms/africastalking/inbound", json={"from": AMINA})
    assert bad.status == 422 and (await bad.json())["code"] == "inbound_sms_invalid"


def test_a_profile_number_must_be_ascii_digits() -> None:
    assert parse_command("RENEW ²").number is None
    assert parse_command("renew 2").number == 2 and parse_command("Lipa, 2.").name == "renew"


def test_a_refused_renewal_is_told_as_it_is() -> None:
    """The 2-minute rule asks to wait, a provider failure says it failed, and anything else (a
    free plan, a period already paid) says there is nothing to renew: never "already sent"."""
    assert renewal_refusal(Conflict("too soon", code="renewal_push_too_soon")) == "wait"
    assert renewal_refusal(GatewayUnavailable("Daraja is down")) == "failed"
    assert renewal_refusal(GatewayConfigurationError("bad passkey")) == "failed"
    for code in ("renewal_is_free", "renewal_already_paid", "subscription_not_renewable"):
        assert renewal_refusal(Conflict("no", code=code)) == "not_renewable"
    assert SMS_REFUSALS["not_renewable"] == "sms.renew_none"
