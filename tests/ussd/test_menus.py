"""The menu engine's promises: every screen fits, navigation keys work everywhere, hops are
idempotent, a dropped quiz resumes, PINs lock, unknown phones register, and nothing a
gateway or a person sends produces a 500 or a malformed reply."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Collection, Mapping
from datetime import timedelta

import pytest
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient, AiohttpServer

from lms_domain.assessments.models import Attempt, AttemptStatus, Question, QuestionChoice, Quiz
from lms_domain.commerce.models import Price, PriceInterval, Product, ProductKind
from lms_domain.courses.models import Enrollment
from lms_domain.courses.service import enroll
from lms_domain.i18n import Language
from lms_domain.ids import new_id
from lms_domain.messaging.models import UssdSessionEvent
from lms_domain.notifications.gsm import gsm7_length
from lms_domain.payments.models import PaymentIntent
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Institution, Learner, Phone, UnknownPhonePolicy
from server.keys import phone_channels_key
from server.kv import MemoryStore
from server.seed import DEMO_INSTITUTION_ID, sid
from tests.conftest import T0
from tests.factories import make_course, make_learner
from tests.ussd.conftest import AMINA, CORRECT, SHARED, World, make_world
from ussd.menus import SCREENS
from ussd.menus.entry import pin_frame
from ussd.screens import Ctx, Hop
from ussd.session_store import Frame, QuizRun, Resume, UssdState

LONG_PHONE = "+254711000005"
LONG = "Wanjiku-Nyambura Achieng-Odhiambo Kariuki-Mwangi Chebet Mutua"  # 60 characters


async def _long_learner(world: World) -> uuid.UUID:
    """A learner whose every name and title is as long as the schema allows, enrolled in eight
    courses of several quizzes, with a question whose prompt and choices overflow a screen."""
    async with world.makers() as session, session.begin():
        school = await session.get(Institution, DEMO_INSTITUTION_ID)
        assert school is not None
        learner = await make_learner(session, institution=school, name=LONG, phone=LONG_PHONE)
        for n in range(8):
            fixture = await make_course(session, institution=school, questions=3, title=f"Course {n} " + "T" * 180)
            fixture.course.title_sw = f"Kozi {n} " + "K" * 180
            fixture.quiz.title_en, fixture.quiz.title_sw = "Quiz " + "Q" * 190, "Jaribio " + "J" * 190
            fixture.questions[0].prompt_en = "Which of these is true? " + "word " * 90
            fixture.questions[0].prompt_sw = "Ipi kati ya hizi ni kweli? " + "neno " * 90
            for choice in await session.scalars(
                sa.select(QuestionChoice).where(QuestionChoice.question_id == fixture.questions[0].id)
            ):
                choice.text_en, choice.text_sw = "An answer " + "a" * 190, "Jibu " + "j" * 190
            await enroll(session=session, learner_id=learner.id, course_id=fixture.course.id, clock=world.clock)
        product = Product(
            id=new_id(),
            institution_id=school.id,
            sku="LONG",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Premium " + "P" * 190,
            name_sw="Premium " + "M" * 190,
        )
        session.add(product)
        await session.flush()
        price = Price(
            id=new_id(),
            institution_id=school.id,
            product_id=product.id,
            amount_minor=25_000_000,
            interval=PriceInterval.YEAR,
        )
        session.add(price)
        await session.flush()
        for status in (SubscriptionStatus.GRACE, SubscriptionStatus.ACTIVE):
            session.add(
                Subscription(
                    id=new_id(),
                    institution_id=school.id,
                    learner_id=learner.id,
                    product_id=product.id,
                    price_id=price.id,
                    status=status,
                    current_period_start=T0 - timedelta(days=300),
                    current_period_end=T0 + timedelta(days=65),
                    grace_until=T0 + timedelta(days=72) if status is SubscriptionStatus.GRACE else None,
                )
            )
        return learner.id


async def _walk_every_screen(world: World, language: Language) -> list[str]:
    phone = world.phone(LONG_PHONE)
    await phone.dial()
    await phone.press("1234")
    if language is Language.SW:
        await phone.press("4", "2")
    await phone.press("1")  # courses, paged
    for _ in range(6):
        await phone.press("98")
    await phone.press("1")  # a course: its quizzes
    await phone.press("98")
    await phone.press("1")  # the quiz: a question too long for one screen
    await phone.press("98", "98")
    await phone.press("1", "1", "1")  # answers; the last submits
    await phone.dial()
    await phone.press("1234", "2", "98", "98", "98", "00")  # progress, paged, home
    await phone.press("3", "1", "1", "0", "0", "00", "5")  # subscriptions, renew confirm, back, help
    return phone.screens


@pytest.mark.parametrize("language", [Language.EN, Language.SW])
async def test_every_screen_fits_with_long_names_and_titles(world: World, language: Language) -> None:
    await _long_learner(world)
    screens = await _walk_every_screen(world, language)
    # Phone.hop asserts each reply starts CON/END and is at most 160 characters; here, that
    # the walk really reached the long screens and paged them with the footer kept.
    assert len(screens) > 25
    paged = [s for s in screens if ("98 More" in s or "98 Zaidi" in s)]
    assert len(paged) >= 3, screens
    assert all(s.rstrip().endswith(("Home", "Mwanzo", "Back", "Rudi")) for s in paged)
    assert any(s.startswith("END ") for s in screens)


async def test_back_home_and_more_work_on_every_menu(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    home = await amina.press("1234")
    courses = await amina.press("1")
    quizzes = await amina.press("1")
    assert await amina.press("0") == courses
    assert await amina.press("1") == quizzes
    assert await amina.press("00") == home
    assert (await amina.press("0")) == home  # nothing below home: stays
    progress = await amina.press("2")
    assert progress.endswith("0 Back 00 Home")
    assert await amina.press("98") == progress  # no more pages: the same page


@pytest.mark.parametrize("garbage", ["9", "abc", "", "1#", "-1", "1" * 200, "  ", "٣", "99999999999"])
async def test_an_invalid_choice_reshows_the_screen_with_a_note(world: World, garbage: str) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    home = await amina.press("1234")
    again = await amina.press(garbage)
    assert again.startswith("CON Invalid choice.\n") and again.endswith(home.removeprefix("CON ")), again


async def test_a_repeated_hop_replays_the_same_screen_without_applying_it_twice(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    first = await amina.press("0000")  # a wrong PIN
    assert first.startswith("CON Wrong PIN. 2 tries left.")
    # Safaricom repeats a hop: the same sessionId and text, in sequence and concurrently.
    assert await amina.hop("0000") == first
    repeated = await asyncio.gather(*(amina.hop("0000") for _ in range(5)))
    assert set(repeated) == {first}
    learner = await world.scalar(sa.select(Learner).where(Learner.id == sid("learner", "amina")))
    assert learner.pin_failed_count == 1

    await amina.press("1234", "1", "1", "1")
    for answer in CORRECT[:-1]:
        await amina.press(str(answer))
    done = await amina.press(str(CORRECT[-1]))
    assert await amina.hop("*".join(amina.inputs)) == done
    submitted = await world.scalar(
        sa.select(sa.func.count(Attempt.id)).where(
            Attempt.learner_id == sid("learner", "amina"), Attempt.status == AttemptStatus.SUBMITTED
        )
    )
    assert submitted == 1


async def test_a_dropped_quiz_resumes_on_redial_with_its_answers(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234", "1", "1", "1")
    for answer in CORRECT[:3]:
        await amina.press(str(answer))
    # The network drops the session; the learner dials again (a new sessionId, the same phone).
    offer = await amina.dial()
    assert offer == "CON Amina Wanjiru, you left a quiz at question 4 of 6.\n1. Continue\n2. Start again"
    pin = await amina.press("1")
    assert pin.startswith("CON Amina Wanjiru, enter your 4-digit PIN:")
    question = await amina.press("1234")
    assert question.startswith("CON Q4/6:"), question
    for answer in CORRECT[3:]:
        result = await amina.press(str(answer))
    assert result.startswith("END Score: 6/6 (100%)"), result
    # Finished: the next dial starts afresh.
    assert (await amina.dial()).startswith("CON Amina Wanjiru, enter your 4-digit PIN:")


async def test_start_again_forgets_the_dropped_quiz_once_its_owner_logs_in(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234", "1", "1", "1", "1")
    await amina.dial()
    assert (await amina.press("2")).startswith("CON Amina Wanjiru, enter your 4-digit PIN:")
    assert (await amina.press("1234")).startswith("CON Somo: Amina Wanjiru")
    assert (await amina.dial()).startswith("CON Amina Wanjiru, enter your 4-digit PIN:")


async def test_on_a_shared_phone_one_learner_cannot_wipe_anothers_dropped_quiz(world: World) -> None:
    phone = world.phone(SHARED)
    await phone.dial()
    await phone.press("1", "2345", "1", "1", "1", "1", "1")  # Baraka answers two questions, then drops
    offer = await phone.dial()
    assert offer.startswith("CON Baraka Otieno, you left a quiz at question 3 of 6.")
    await phone.press("2", "2", "3456", "1", "1", "1", "1")  # Zawadi declines it and starts her own
    offer = await phone.dial()
    assert offer.startswith("CON Baraka Otieno, you left a quiz at question 3 of 6."), offer
    await phone.press("1")
    question = await phone.press("2345")
    assert question.startswith("CON Q3/6:"), question


async def test_three_wrong_pins_lock_the_profile_for_fifteen_minutes(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1111")
    assert (await amina.press("2222")).startswith("CON Wrong PIN. 1 tries left.")
    locked = await amina.press("3333")
    assert locked == "END Too many wrong PINs. Try again after 10:15, or ask your school to reset your PIN."
    await amina.dial()
    assert (await amina.press("1234")).startswith("END Too many wrong PINs.")  # even the right PIN
    world.clock.advance(timedelta(minutes=15, seconds=1))
    await amina.dial()
    assert (await amina.press("1234")).startswith("CON Somo: Amina Wanjiru")


async def test_the_right_pin_on_a_shared_phone_opens_only_the_chosen_profile(world: World) -> None:
    phone = world.phone(SHARED)
    await phone.dial()
    await phone.press("1")  # Baraka
    assert (await phone.press("3456")).startswith("CON Wrong PIN.")  # Zawadi's PIN
    assert (await phone.press("2345")).startswith("CON Somo: Baraka Otieno")


async def test_an_unknown_phone_registers_in_kiswahili_and_can_then_log_in(world: World) -> None:
    new = world.phone("+254722000005")
    assert await new.dial() == "CON Welcome to Somo. This phone is not registered.\n1. Register\n2. Help"
    assert (await new.press("1", "2")).startswith("CON Weka nambari ya shule yako:")
    assert (await new.press("NOPE")).startswith("CON Hakuna shule yenye nambari hiyo.")
    assert (await new.press("demo")).startswith("CON Weka jina lako:")
    assert (await new.press("Akinyi*Otieno")).startswith("CON Chagua PIN ya tarakimu 4:")  # a * in a name
    assert (await new.press("12")).startswith("CON PIN ni tarakimu 4.")
    await new.press("4321")
    assert (await new.press("4322")).startswith("CON PIN hazilingani.")
    await new.press("4321")
    home = await new.press("4321")
    assert home.startswith("CON Karibu Akinyi*Otieno! Umesajiliwa Demo School.\nSomo: Akinyi*Otieno"), home
    learner = await world.scalar(
        sa.select(Learner).join(Phone, Phone.id == Learner.phone_id).where(Phone.e164 == "+254722000005")
    )
    assert learner.language is Language.SW and learner.institution_id == DEMO_INSTITUTION_ID
    await new.dial()
    assert (await new.press("4321")).startswith("CON Somo: Akinyi*Otieno")


async def test_a_school_that_registers_its_own_learners_says_so(world: World) -> None:
    async with world.makers() as session, session.begin():
        school = await session.get(Institution, DEMO_INSTITUTION_ID)
        assert school is not None
        school.unknown_phone_policy = UnknownPhonePolicy.ASK_SCHOOL
    new = world.phone("+254722000006")
    await new.dial()
    await new.press("1", "1")
    closing = await new.press("DEMO")
    assert closing == "END Demo School registers its learners itself. Please ask your school to add this phone."
    assert await world.scalar(sa.select(sa.func.count()).select_from(Phone).where(Phone.e164 == "+254722000006")) == 0


@pytest.mark.parametrize(
    ("data", "content_type", "screen"),
    [
        ({}, None, "END "),
        ({"sessionId": "ATUid_x" * 5}, None, "END "),
        ({"phoneNumber": AMINA, "text": ""}, None, "END "),
        ({"sessionId": "ATUid_" + "a" * 32, "phoneNumber": "not-a-phone", "text": ""}, None, "END "),
        ({"sessionId": "ATUid_" + "a" * 200, "phoneNumber": AMINA, "text": ""}, None, "END "),
        ('{"sessionId": "ATUid_abc", "phoneNumber": "+254700000001", "text": ""}', "application/json", "END "),
        ("\x00\xff garbage", "application/octet-stream", "END "),
        ("sessionId=ATUid_%ZZ&phoneNumber=%2B254700000001", "application/x-www-form-urlencoded", "CON "),
        ({"sessionId": "ATUid_" + "b" * 32, "phoneNumber": "0700000001", "text": "\u2603" * 300}, None, "CON "),
    ],
)
async def test_bad_requests_get_a_valid_screen_never_an_error(
    world: World, data: object, content_type: str | None, screen: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else None
    response = await world.client.post("/ussd/africastalking", data=data, headers=headers)
    assert response.status == 200 and response.content_type == "text/plain"
    body = await response.text()
    assert body.startswith(screen) and len(body) <= 160, body


@pytest.mark.parametrize("text", ["1*2*3", "1234*1*1*1", "*" * 50, "98*98*0*00", "x" * 200])
async def test_an_unknown_session_mid_flow_starts_at_the_entry_screen(world: World, text: str) -> None:
    amina = world.phone(AMINA)
    amina.session_id = f"ATUid_{uuid.uuid4().hex}"  # never seen: expired, or another server's
    body = await amina.hop(text)
    assert body == "CON Amina Wanjiru, enter your 4-digit PIN:"
    learner = await world.scalar(sa.select(Learner).where(Learner.id == sid("learner", "amina")))
    assert learner.pin_failed_count == 0  # nothing in the stale text was taken as a PIN


async def test_end_of_session_events_are_stored_once_with_the_last_screen(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234", "2")
    event = {
        "sessionId": amina.session_id,
        "serviceCode": "*384*123#",
        "phoneNumber": AMINA,
        "networkCode": "63902",
        "status": "Incomplete",
        "durationInMillis": "38000",
        "hopsCount": "3",
        "input": "1234*2",
        "lastAppResponse": amina.screens[-1],
        "cost": "KES 0.10",
        "date": "2026-11-27 10:05:00",
    }
    first = await world.client.post("/ussd/africastalking/events", data=event)
    assert first.status == 200 and (await first.json()) == {"stored": True}
    retry = await world.client.post("/ussd/africastalking/events", data=event)
    assert retry.status == 200 and (await retry.json()) == {"stored": False}
    stored = await world.scalar(sa.select(UssdSessionEvent).where(UssdSessionEvent.session_id == amina.session_id))
    assert (stored.status, stored.hops, stored.duration_ms, stored.last_screen) == ("Incomplete", 3, 38000, "progress")
    assert stored.occurred_at == T0 + timedelta(minutes=5)
    odd = {**event, "sessionId": "ATUid_odd", "durationInMillis": "inf", "hopsCount": "many"}
    response = await world.client.post("/ussd/africastalking/events", data=odd)
    assert response.status == 200 and (await response.json()) == {"stored": True}
    odd_row = await world.scalar(sa.select(UssdSessionEvent).where(UssdSessionEvent.session_id == "ATUid_odd"))
    assert (odd_row.duration_ms, odd_row.hops) == (None, None)
    bad = await world.client.post("/ussd/africastalking/events", data={"status": "Success"})
    assert bad.status == 422 and bad.content_type == "application/problem+json"
    assert (await bad.json())["code"] == "ussd_event_invalid"


async def test_two_server_processes_share_sessions_through_redis(
    database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, redis_url: str
) -> None:
    first = await make_world(database_url, aiohttp_server, aiohttp_client, redis_url=redis_url)
    second = await make_world(database_url, aiohttp_server, aiohttp_client, redis_url=redis_url)
    on_first, on_second = first.phone(AMINA), second.phone(AMINA)
    await on_first.dial()
    on_second.session_id = on_first.session_id
    await on_first.press("1234")
    on_second.inputs = list(on_first.inputs)
    # The gateway sends the next hop to the other replica: the menu continues there.
    courses = await on_second.press("1")
    assert courses.startswith("CON Choose a course:\n1. Form 2 Mathematics"), courses
    # And a repeat of an earlier hop, on either replica, replays the same reply.
    assert await on_second.hop("1234") == on_first.screens[-1]


async def test_every_screen_renders_within_the_budget_on_every_page_in_both_languages(world: World) -> None:
    """Each screen of the registry, rendered directly with the longest data the schema allows:
    a screen added later without an entry here fails this test."""
    learner_id = await _long_learner(world)
    service = world.app[phone_channels_key].ussd
    async with world.makers() as session:
        course_id = await session.scalar(
            sa.select(Enrollment.course_id).where(Enrollment.learner_id == learner_id).limit(1)
        )
        quiz_id = await session.scalar(sa.select(Quiz.id).where(Quiz.course_id == course_id))
        sub_id = await session.scalar(sa.select(Subscription.id).where(Subscription.learner_id == learner_id))
    run = QuizRun(attempt_id=str(uuid.uuid4()), quiz_id=str(quiz_id))
    resume = Resume(learner_id=str(learner_id), name=LONG, language=Language.EN, quiz=run, question=11, total=12)
    frames = {
        "resume": {"resume": resume.model_dump(mode="json")},
        "profiles": {"profiles": [[str(uuid.uuid4()), LONG, "en", True] for _ in range(9)]},
        "pin": pin_frame(str(learner_id), LONG, Language.EN).args,
        "welcome": {},
        "reg_language": {},
        "reg_school": {},
        "reg_name": {},
        "reg_pin": {},
        "reg_pin_confirm": {},
        "home": {},
        "courses": {},
        "quizzes": {"course_id": str(course_id), "course": ["C" * 200, "K" * 200]},
        "question": {"index": 0},
        "progress": {},
        "subscription": {},
        "renew_confirm": {"id": str(sub_id), "amount": "250,000", "product": "P" * 200, "provider": "airtel"},
        "language": {},
    }
    assert set(frames) == set(SCREENS)
    for language in Language:
        for name, args in frames.items():
            for notice in ("", "Wrong PIN. 2 tries left."):
                state = UssdState(language=language, learner_id=str(learner_id))
                state.learner_name, state.profiles, state.quiz = LONG, 3, run
                state.stack = [Frame(screen="home"), Frame(screen=name, args=dict(args))]
                hop = Hop(session_id="s", phone=LONG_PHONE, network=None, service_code="*384*123#", text="")
                ctx = Ctx(service.deps, hop, state)
                for page in range(12):
                    state.stack[-1].page = page
                    reply = await service._render(ctx, notice)
                    assert len(reply.render()) <= 160, (name, language, page, reply.render())


class FlakyStore(MemoryStore):
    """The session store with a fault to arm: the next write of a session's state fails once
    (and writes nothing, as a failed Redis transaction would)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next_set = False

    async def write(self, sets: Mapping[str, tuple[str, float]], deletes: Collection[str] = ()) -> None:
        if self.fail_next_set and any(key.startswith("ussd:s:") for key in sets):
            self.fail_next_set = False
            raise ConnectionError("redis went away")
        await super().write(sets, deletes)


async def test_a_store_failure_ends_the_session_politely_and_a_retry_never_registers_twice(world: World) -> None:
    service = world.app[phone_channels_key].ussd
    store = FlakyStore()
    service.deps = dataclasses.replace(service.deps, store=store)
    new = world.phone("+254722000007")
    await new.dial()
    await new.press("1", "1", "DEMO", "Juma Otieno", "4321")
    store.fail_next_set = True
    failed = await new.press("4321")  # registers, then the state cannot be saved
    assert failed == "END Sorry, something went wrong. Please try again."
    retried = await new.hop("*".join(new.inputs))  # the gateway repeats the hop
    assert retried == "END Juma Otieno is already registered on this phone. Dial again and enter your PIN."
    count = await world.scalar(
        sa.select(sa.func.count(Learner.id))
        .join(Phone, Phone.id == Learner.phone_id)
        .where(Phone.e164 == "+254722000007")
    )
    assert count == 1
    await new.dial()
    assert (await new.press("4321")).startswith("CON Somo: Juma Otieno\n1. Take a quiz")  # English was chosen


async def test_a_session_state_this_version_cannot_read_starts_afresh(world: World) -> None:
    amina = world.phone(AMINA)
    await amina.dial()
    store = world.app[phone_channels_key].ussd.deps.store
    await store.set(f"ussd:s:{amina.session_id}", '{"language": 42, "stack": "nonsense"}', ttl_s=60)
    assert await amina.press("1234") == "CON Amina Wanjiru, enter your 4-digit PIN:"


async def test_renew_now_says_when_no_prompt_will_come(world: World) -> None:
    silent = "+254711000016"  # digit 6: the customer pays but the callback never comes
    async with world.makers() as session, session.begin():
        school = await session.get(Institution, DEMO_INSTITUTION_ID)
        learner = await make_learner(session, institution=school, name="Otieno Silent", phone=silent)
        session.add(
            Subscription(
                id=new_id(),
                institution_id=DEMO_INSTITUTION_ID,
                learner_id=learner.id,
                product_id=sid("product", "premium"),
                price_id=sid("price", "premium", "month"),
                status=SubscriptionStatus.ACTIVE,
                current_period_start=T0 - timedelta(days=27),
                current_period_end=T0 + timedelta(days=3),
            )
        )
        learner_id = learner.id
    phone = world.phone(silent)
    await phone.dial()
    await phone.press("1234", "3", "1")
    assert await phone.press("1") == "END You will get an M-Pesa prompt to enter your PIN."
    await world.app[phone_channels_key].background.drain()
    # Approving again while that prompt is open fires nothing and says so.
    await phone.dial()
    await phone.press("1234", "3", "1")
    assert await phone.press("1") == "END An M-Pesa prompt was already sent. Check your phone."
    prompts = await world.scalar(
        sa.select(sa.func.count(PaymentIntent.id)).where(PaymentIntent.learner_id == learner_id)
    )
    assert prompts == 1


async def test_after_a_cancelled_prompt_the_next_waits_two_minutes(world: World) -> None:
    phone = world.phone(SHARED)
    await phone.dial()
    await phone.press("2", "3456", "3", "1")
    assert (await phone.press("1")).startswith("END Utapokea ombi la M-Pesa")

    async def cancelled() -> bool:
        outcome = await world.scalar(
            sa.select(SubscriptionRenewalAttempt.outcome).where(
                SubscriptionRenewalAttempt.subscription_id == sid("subscription", "zawadi")
            )
        )
        return outcome is RenewalOutcome.FAILED

    await world.settle(cancelled, "the cancelled prompt")
    await phone.dial()
    await phone.press("2", "3456", "3", "1")
    assert await phone.press("1") == "END Tafadhali subiri dakika 2 kabla ya kuomba ombi jingine."
    world.clock.advance(timedelta(minutes=2, seconds=1))
    await phone.dial()
    await phone.press("2", "3456", "3", "1")
    assert (await phone.press("1")).startswith("END Utapokea ombi la M-Pesa")


async def test_a_question_with_extension_characters_stays_within_the_septet_budget(world: World) -> None:
    async with world.makers() as session, session.begin():
        quiz_id = await session.scalar(sa.select(Quiz.id).where(Quiz.course_id == sid("course", "form2-maths")))
        question = await session.scalar(sa.select(Question).where(Question.quiz_id == quiz_id, Question.position == 0))
        assert question is not None
        question.prompt_en = "Evaluate {[(2^3)|~4]} \\ € " * 12
    amina = world.phone(AMINA)
    await amina.dial()
    await amina.press("1234", "1", "1")
    screen = await amina.press("1")
    assert gsm7_length(screen) == len(screen) <= 160, screen
