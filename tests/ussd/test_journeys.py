"""Feature-phone journeys over Africa's Talking's real USSD protocol, against the demo data a
new user meets after ``make run``: dial, choose a profile, enter the PIN, take the demo quiz,
check progress, renew (the STK Push reaches the Daraja simulator, its callback renews the
subscription), in English and in Kiswahili. No mocks: the server, the database and the
payment simulators run for real on loopback."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from lms_domain.assessments.models import Attempt, AttemptStatus, Channel
from lms_domain.payments.models import PaymentIntent, Provider
from lms_domain.subscriptions.models import RenewalOutcome, Subscription, SubscriptionRenewalAttempt
from server.seed import sid
from tests.conftest import T0
from tests.ussd.conftest import AIRTEL, AMINA, CORRECT, SHARED, Phone, World


async def _take_demo_quiz(phone: Phone, answers: list[int]) -> str:
    """From the home menu: Take a quiz, the demo course, its final quiz, every question."""
    courses = await phone.press("1")
    assert "Form 2 Mathematics" in courses or "Hisabati" in courses, courses
    quizzes = await phone.press("1")
    assert quizzes.startswith("CON ") and "1." in quizzes
    screen = await phone.press("1")
    for number, answer in enumerate(answers, start=1):
        assert f"{number}/{len(answers)}" in screen, screen
        screen = await phone.press(str(answer))
    return screen


async def test_a_learner_takes_the_demo_quiz_checks_progress_and_renews_in_english(world: World) -> None:
    amina = world.phone(AMINA)
    screen = await amina.dial()
    assert screen == "CON Amina Wanjiru, enter your 4-digit PIN:"
    home = await amina.press("1234")
    assert home.startswith("CON Somo: Amina Wanjiru\n1. Take a quiz\n2. My progress\n3. Subscription")
    result = await _take_demo_quiz(amina, CORRECT)
    assert result.startswith("END Score: 6/6 (100%). You passed"), result
    attempt = await world.scalar(sa.select(Attempt).where(Attempt.learner_id == sid("learner", "amina")))
    assert attempt.status is AttemptStatus.SUBMITTED and attempt.channel is Channel.USSD
    assert (attempt.score_points, attempt.max_points) == (6, 6)

    await amina.dial()
    await amina.press("1234")
    progress = await amina.press("2")
    assert "Form 2 Mathematics" in progress and "quizzes 100%" in progress, progress

    await amina.dial()
    await amina.press("1234")
    detail = await amina.press("3")
    assert "Somo Premium" in detail and "Status: Active" in detail and "KES 300/month" in detail, detail
    confirm = await amina.press("1")
    assert "Pay KES 300 for Somo Premium from 0700000001 with M-Pesa?" in confirm, confirm
    closing = await amina.press("1")
    assert closing == "END You will get an M-Pesa prompt to enter your PIN."

    subscription = await world.scalar(sa.select(Subscription).where(Subscription.id == sid("subscription", "amina")))
    first_end = subscription.current_period_end

    async def renewed() -> bool:
        found = await world.scalar(sa.select(Subscription).where(Subscription.id == sid("subscription", "amina")))
        return bool(found.current_period_end > first_end)

    await world.settle(renewed, "the renewal's STK callback")
    outcome = await world.scalar(
        sa.select(SubscriptionRenewalAttempt.outcome).where(
            SubscriptionRenewalAttempt.subscription_id == sid("subscription", "amina")
        )
    )
    assert outcome is RenewalOutcome.SUCCEEDED
    # Exactly one prompt for the one approval.
    prompts = await world.scalar(
        sa.select(sa.func.count(PaymentIntent.id)).where(PaymentIntent.subscription_id == sid("subscription", "amina"))
    )
    assert prompts == 1


async def test_the_same_journey_in_kiswahili_on_a_shared_phone(world: World) -> None:
    phone = world.phone(SHARED)
    choose = await phone.dial()
    assert choose == "CON Welcome to Somo. Who is learning?\n1. Baraka Otieno\n2. Zawadi Otieno"
    pin = await phone.press("2")
    assert pin == "CON Zawadi Otieno, weka PIN yako ya tarakimu 4:\n0 Rudi"
    home = await phone.press("3456")
    assert home.startswith("CON Somo: Zawadi Otieno\n1. Fanya jaribio\n2. Maendeleo yangu\n3. Usajili")
    assert "6. Badilisha mwanafunzi" in home
    wrong = [(c % 4) + 1 for c in CORRECT]
    result = await _take_demo_quiz(phone, wrong)
    assert result.startswith("END Alama: 0/6 (0%). Alama ya kufaulu"), result

    await phone.dial()
    await phone.press("2", "3456")
    progress = await phone.press("2")
    assert "Maendeleo yangu:" in progress and "majaribio 0%" in progress, progress

    await phone.dial()
    await phone.press("2", "3456")
    detail = await phone.press("3")
    assert "Hali: Malipo yanadaiwa" in detail and "KES 300/mwezi" in detail, detail
    confirm = await phone.press("1")
    assert confirm.startswith("CON Lipa KES 300 kwa Somo Premium kutoka 0700000002 kwa M-Pesa?"), confirm
    closing = await phone.press("1")
    assert closing == "END Utapokea ombi la M-Pesa kuweka PIN yako."

    async def answered() -> bool:
        # 0700000002 ends in 2: the simulator's customer cancels the prompt (ResultCode 1032).
        outcome = await world.scalar(
            sa.select(SubscriptionRenewalAttempt.outcome).where(
                SubscriptionRenewalAttempt.subscription_id == sid("subscription", "zawadi")
            )
        )
        return outcome is RenewalOutcome.FAILED

    await world.settle(answered, "the cancelled prompt's callback")


async def test_an_airtel_number_is_asked_through_airtel_money(world: World) -> None:
    phone = world.phone(AMINA, network=AIRTEL)  # a ported number: the network code wins
    await phone.dial()
    await phone.press("1234", "3", "1")
    confirm = phone.screens[-1]
    assert "with Airtel Money?" in confirm, confirm
    assert await phone.press("1") == "END You will get an Airtel Money prompt to enter your PIN."

    async def prompted() -> bool:
        provider = await world.scalar(
            sa.select(PaymentIntent.provider).where(PaymentIntent.subscription_id == sid("subscription", "amina"))
        )
        return provider is Provider.AIRTEL

    await world.settle(prompted, "the Airtel collection")


async def test_a_learner_switches_to_kiswahili_and_renews_until_active(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234")
    assert (await amina.press("4")) == "CON Choose language:\n1. English\n2. Kiswahili\n0 Back 00 Home"
    home = await amina.press("2")
    assert home.startswith("CON Somo: Amina Wanjiru\n1. Fanya jaribio"), home
    # Kept on the profile: the next dial is in Kiswahili from the PIN prompt on.
    assert (await amina.dial()) == "CON Amina Wanjiru, weka PIN yako ya tarakimu 4:"
    await amina.press("1234")
    detail = await amina.press("3")
    assert "Hali: Hai" in detail and "KES 300/mwezi" in detail, detail
    await amina.press("1")
    assert await amina.press("1") == "END Utapokea ombi la M-Pesa kuweka PIN yako."

    async def active_for_another_month() -> bool:
        found = await world.scalar(sa.select(Subscription).where(Subscription.id == sid("subscription", "amina")))
        return bool(found.current_period_end > T0 + timedelta(days=30))

    await world.settle(active_for_another_month, "the renewal's STK callback")
    found = await world.scalar(sa.select(Subscription).where(Subscription.id == sid("subscription", "amina")))
    assert found.status.value == "active"
