"""Demo data: one school with staff, learners on shared phones, a bilingual course,
subscription prices, provider accounts pointing at the local simulators and
notification templates. Idempotent: every row has a deterministic id and is only
created when missing, so running it twice changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.models import Question, QuestionChoice, Quiz
from lms_domain.changefeed.models import OutboxEntry, SyncCounter
from lms_domain.clock import Clock
from lms_domain.commerce.models import Price, PriceInterval, Product, ProductKind
from lms_domain.courses.models import Course, CourseAccess, Lesson, Prerequisite, Section
from lms_domain.courses.service import enroll
from lms_domain.db import Base
from lms_domain.entitlements.models import Entitlement, EntitlementSource
from lms_domain.i18n import Language
from lms_domain.ids import natural_id
from lms_domain.ledger.models import JournalEntry
from lms_domain.models import Learner, Phone, Posting, User
from lms_domain.notifications.events import check_template, event_spec
from lms_domain.notifications.models import (
    NotificationChannel,
    NotificationLog,
    NotificationStatus,
    NotificationTemplate,
)
from lms_domain.notifications.service import template_id_for
from lms_domain.payments.models import Provider, ProviderAccount, ProviderAccountKind
from lms_domain.security import Hasher
from lms_domain.subscriptions.models import DunningSchedule, Subscription, SubscriptionItem, SubscriptionStatus
from lms_domain.tenancy.models import Institution, Role
from lms_domain.tenancy.service import create_institution, create_learner, create_user

DEMO_INSTITUTION_ID = natural_id("seed", "institution", "demo")
DEMO_CODE = "DEMO"


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: Role
    full_name: str
    email: str | None = None  # admins get alerts (a payment configuration error) by email


@dataclass(frozen=True)
class DemoLearner:
    key: str
    name: str
    phone: str
    pin: str
    language: Language
    username: str | None = None


# Development credentials, documented in the README. Never used outside development:
# production seeding is refused by the CLI.
DEMO_USERS = (
    DemoUser("platform", "platform-dev-2026", Role.PLATFORM_ADMIN, "Platform Operator", "ops@somo.example"),
    DemoUser("admin", "admin-dev-2026", Role.INSTITUTION_ADMIN, "Grace Achieng (Bursar)", "bursar@demo-school.example"),
    DemoUser("teacher", "teacher-dev-2026", Role.INSTRUCTOR, "Mr. Peter Kamau"),
    DemoUser("amina", "learner-dev-2026", Role.LEARNER, "Amina Wanjiru"),
)
DEMO_LEARNERS = (
    DemoLearner("amina", "Amina Wanjiru", "+254700000001", "1234", Language.EN, username="amina"),
    DemoLearner("baraka", "Baraka Otieno", "+254700000002", "2345", Language.EN),
    DemoLearner("zawadi", "Zawadi Otieno", "+254700000002", "3456", Language.SW),
    DemoLearner("juma", "Juma Mwangi", "+254700000003", "4567", Language.SW),
)

# (english, swahili, [(choice en, choice sw, correct)])
QUIZ_QUESTIONS: list[tuple[str, str, list[tuple[str, str, bool]]]] = [
    (
        "Solve: 2x + 3 = 11",
        "Tatua: 2x + 3 = 11",
        [("x = 4", "x = 4", True), ("x = 7", "x = 7", False), ("x = 5", "x = 5", False), ("x = 3", "x = 3", False)],
    ),
    (
        "What is 15% of 200?",
        "Asilimia 15 ya 200 ni ngapi?",
        [("20", "20", False), ("30", "30", True), ("15", "15", False), ("35", "35", False)],
    ),
    (
        "Angles in a triangle add up to?",
        "Jumla ya pembe za pembetatu ni?",
        [
            ("90 degrees", "digrii 90", False),
            ("180 degrees", "digrii 180", True),
            ("270 degrees", "digrii 270", False),
            ("360 degrees", "digrii 360", False),
        ],
    ),
    (
        "Area of a triangle, base 6 cm, height 4 cm?",
        "Eneo la pembetatu, kitako 6 cm, kimo 4 cm?",
        [
            ("24 cm2", "24 cm2", False),
            ("10 cm2", "10 cm2", False),
            ("12 cm2", "12 cm2", True),
            ("20 cm2", "20 cm2", False),
        ],
    ),
    (
        "Simplify: 3(a + 2) - a",
        "Rahisisha: 3(a + 2) - a",
        [
            ("2a + 6", "2a + 6", True),
            ("4a + 6", "4a + 6", False),
            ("2a + 2", "2a + 2", False),
            ("3a + 5", "3a + 5", False),
        ],
    ),
    (
        "If y = 2x and x = 5, y = ?",
        "Ikiwa y = 2x na x = 5, y = ?",
        [("7", "7", False), ("10", "10", True), ("25", "25", False), ("2.5", "2.5", False)],
    ),
]

SECTIONS: list[tuple[str, str, list[tuple[str, str, str, str]]]] = [
    (
        "Algebra",
        "Aljebra",
        [
            (
                "Linear equations",
                "Milinganyo sahili",
                "An equation like 2x + 3 = 11 is solved by doing the same to both sides: subtract 3, then divide by 2.",
                "Mlinganyo kama 2x + 3 = 11 hutatuliwa kwa kufanya jambo "
                "lilelile pande zote mbili: toa 3, kisha gawanya kwa 2.",
            ),
            (
                "Expanding brackets",
                "Kufungua mabano",
                "Multiply every term inside the bracket: 3(a + 2) = 3a + 6.",
                "Zidisha kila kipengele ndani ya mabano: 3(a + 2) = 3a + 6.",
            ),
        ],
    ),
    (
        "Geometry",
        "Jiometria",
        [
            (
                "Angles of a triangle",
                "Pembe za pembetatu",
                "The three angles of any triangle add up to 180 degrees.",
                "Pembe tatu za pembetatu yoyote hujumlika kuwa digrii 180.",
            ),
            ("Area of a triangle", "Eneo la pembetatu", "Area = half x base x height.", "Eneo = nusu x kitako x kimo."),
        ],
    ),
]

# The demo school's own wording of one event, over the built-in texts of
# ``lms_domain.notifications.events`` (which every other event uses).
TEMPLATES: dict[str, tuple[str, str]] = {
    "renewal_due": (
        "Hi {learner_name}, your Somo Premium (KES {amount}) renews on {due_date}. Reply RENEW to "
        "{shortcode} or dial {ussd_code} to approve. Demo School",
        "Habari {learner_name}, Somo Premium (KES {amount}) inaisha {due_date}. Jibu RENEW kwa "
        "{shortcode} au piga {ussd_code} kukubali. Demo School",
    ),
}


def sid(*key: object) -> uuid.UUID:
    return natural_id("seed", *key)


async def _ensure(session: AsyncSession, row: Base) -> None:
    """Add ``row`` unless a row with its id already exists (what makes seeding idempotent)."""
    if await session.get(type(row), row.id) is None:  # type: ignore[attr-defined]
        session.add(row)
        await session.flush()


async def seed_demo(
    *,
    session: AsyncSession,
    clock: Clock,
    simulator_url: str,
    hasher: Hasher,
    report: Callable[[str], None] = lambda _msg: None,
) -> None:
    inst_id = DEMO_INSTITUTION_ID
    if await session.get(Institution, inst_id) is None:
        await create_institution(session=session, name="Demo School", code=DEMO_CODE, institution_id=inst_id)
    report("institution Demo School (code DEMO)")

    user_ids: dict[str, uuid.UUID] = {}
    for user in DEMO_USERS:
        user_id = sid("user", user.username)
        user_ids[user.username] = user_id
        if await session.get(User, user_id) is None:
            await create_user(
                session=session,
                username=user.username,
                password=user.password,
                role=user.role,
                institution_id=None if user.role is Role.PLATFORM_ADMIN else inst_id,
                full_name=user.full_name,
                email=user.email,
                hasher=hasher,
                user_id=user_id,
            )
    report(f"{len(DEMO_USERS)} users")

    course_id = await _seed_course(session, inst_id, user_ids["teacher"])
    await _seed_paid_course(session, inst_id, course_id)
    report("course Form 2 Mathematics (6-question final quiz, en + sw)")

    for learner in DEMO_LEARNERS:
        learner_id = sid("learner", learner.key)
        if await session.get(Learner, learner_id) is None:
            await create_learner(
                session=session,
                institution_id=inst_id,
                display_name=learner.name,
                phone=learner.phone,
                language=learner.language,
                pin=learner.pin,
                user_id=user_ids[learner.username] if learner.username else None,
                grade="Form 2",
                hasher=hasher,
                learner_id=learner_id,
            )
        await enroll(session=session, learner_id=learner_id, course_id=course_id, clock=clock)
    # Demo data is not news: the "you are enrolled" SMS its set-up queued go nowhere.
    await session.execute(
        sa.delete(NotificationLog).where(
            NotificationLog.institution_id == inst_id,
            NotificationLog.event == "enrollment_confirmed",
            NotificationLog.status == NotificationStatus.QUEUED,
        )
    )
    report(f"{len(DEMO_LEARNERS)} learners on 3 phones, enrolled in Form 2 Mathematics")

    await _seed_commerce(session, inst_id)
    report("products: Somo Premium monthly KES 300, yearly KES 3,000")
    await _seed_subscriptions(session, inst_id, clock)
    report("subscriptions: Amina (Premium, renews in 3 days), Zawadi (Premium, payment due)")
    await _seed_providers(session, inst_id, simulator_url)
    report("provider accounts: M-Pesa STK 174379, paybill 600000, Airtel collection (simulators)")
    await _seed_templates(session, inst_id)
    await _ensure(session, DunningSchedule(id=sid("dunning", "demo"), institution_id=inst_id))
    report("the school's renewal message (en, sw) and the default dunning schedule")


async def _seed_course(session: AsyncSession, inst_id: uuid.UUID, teacher_id: uuid.UUID) -> uuid.UUID:
    course_id = sid("course", "form2-maths")
    await _ensure(
        session,
        Course(
            id=course_id,
            institution_id=inst_id,
            slug="form-2-mathematics",
            title_en="Form 2 Mathematics",
            title_sw="Hisabati Kidato cha Pili",
            summary_en="Algebra and geometry for Form 2, in short lessons.",
            summary_sw="Aljebra na jiometria kwa Kidato cha Pili, kwa masomo mafupi.",
            access=CourseAccess.FREE,
            is_published=True,
            created_by_id=teacher_id,
        ),
    )
    for s_pos, (title_en, title_sw, lessons) in enumerate(SECTIONS):
        section_id = sid("section", "form2-maths", s_pos)
        await _ensure(
            session,
            Section(
                id=section_id,
                institution_id=inst_id,
                course_id=course_id,
                position=s_pos,
                title_en=title_en,
                title_sw=title_sw,
            ),
        )
        for l_pos, (l_en, l_sw, body_en, body_sw) in enumerate(lessons):
            lesson_id = sid("lesson", "form2-maths", s_pos, l_pos)
            await _ensure(
                session,
                Lesson(
                    id=lesson_id,
                    institution_id=inst_id,
                    section_id=section_id,
                    course_id=course_id,
                    position=l_pos,
                    title_en=l_en,
                    title_sw=l_sw,
                    body_en=body_en,
                    body_sw=body_sw,
                    duration_minutes=10,
                ),
            )
    quiz_id = sid("quiz", "form2-maths", "final")
    await _ensure(
        session,
        Quiz(
            id=quiz_id,
            institution_id=inst_id,
            course_id=course_id,
            title_en="Form 2 Mathematics: final quiz",
            title_sw="Hisabati Kidato cha Pili: jaribio la mwisho",
            pass_mark_percent=50,
            max_attempts=3,
            is_final=True,
        ),
    )
    for q_pos, (prompt_en, prompt_sw, choices) in enumerate(QUIZ_QUESTIONS):
        question_id = sid("question", "form2-maths", q_pos)
        await _ensure(
            session,
            Question(
                id=question_id,
                institution_id=inst_id,
                quiz_id=quiz_id,
                position=q_pos,
                prompt_en=prompt_en,
                prompt_sw=prompt_sw,
            ),
        )
        for c_pos, (text_en, text_sw, correct) in enumerate(choices):
            choice_id = sid("choice", "form2-maths", q_pos, c_pos)
            await _ensure(
                session,
                QuestionChoice(
                    id=choice_id,
                    institution_id=inst_id,
                    question_id=question_id,
                    position=c_pos,
                    text_en=text_en,
                    text_sw=text_sw,
                    is_correct=correct,
                ),
            )
    return course_id


async def _seed_paid_course(session: AsyncSession, inst_id: uuid.UUID, maths_id: uuid.UUID) -> None:
    course_id = sid("course", "kcse-revision")
    await _ensure(
        session,
        Course(
            id=course_id,
            institution_id=inst_id,
            slug="kcse-maths-revision",
            title_en="KCSE Mathematics Revision",
            title_sw="Marudio ya Hisabati KCSE",
            summary_en="Past-paper practice. Needs Somo Premium.",
            summary_sw="Mazoezi ya mitihani iliyopita. Inahitaji Somo Premium.",
            access=CourseAccess.PAID,
            is_published=True,
        ),
    )
    section_id = sid("section", "kcse-revision", 0)
    await _ensure(
        session,
        Section(id=section_id, institution_id=inst_id, course_id=course_id, title_en="Paper 1", title_sw="Karatasi 1"),
    )
    lesson_id = sid("lesson", "kcse-revision", 0, 0)
    await _ensure(
        session,
        Lesson(
            id=lesson_id,
            institution_id=inst_id,
            section_id=section_id,
            course_id=course_id,
            title_en="Paper 1 walkthrough",
            title_sw="Maelezo ya Karatasi 1",
            duration_minutes=30,
        ),
    )
    prereq_id = sid("prerequisite", "kcse-revision", "form2-maths")
    await _ensure(
        session, Prerequisite(id=prereq_id, institution_id=inst_id, course_id=course_id, required_course_id=maths_id)
    )


async def _seed_commerce(session: AsyncSession, inst_id: uuid.UUID) -> None:
    product_id = sid("product", "premium")
    await _ensure(
        session,
        Product(
            id=product_id,
            institution_id=inst_id,
            sku="SOMO-PREMIUM",
            kind=ProductKind.SUBSCRIPTION,
            name_en="Somo Premium",
            name_sw="Somo Premium",
        ),
    )
    for interval, shillings in ((PriceInterval.MONTH, 300), (PriceInterval.YEAR, 3000)):
        price_id = sid("price", "premium", interval.value)
        await _ensure(
            session,
            Price(
                id=price_id,
                institution_id=inst_id,
                product_id=product_id,
                currency="KES",
                amount_minor=shillings * 100,
                interval=interval,
            ),
        )


# (learner key, status, days until the period ends): Amina renews soon; Zawadi's renewal failed.
DEMO_SUBSCRIPTIONS = (("amina", SubscriptionStatus.ACTIVE, 3), ("zawadi", SubscriptionStatus.PAST_DUE, -1))


async def _seed_subscriptions(session: AsyncSession, inst_id: uuid.UUID, clock: Clock) -> None:
    """Monthly Premium subscriptions to renew from the USSD menu or by SMS. Periods are set from
    today when first seeded and then left alone, like any real subscription."""
    price_id = sid("price", "premium", PriceInterval.MONTH.value)
    product_id = sid("product", "premium")
    now = clock.now().replace(microsecond=0)
    for key, status, days in DEMO_SUBSCRIPTIONS:
        sub_id = sid("subscription", key)
        if await session.get(Subscription, sub_id) is not None:
            continue
        end = now + timedelta(days=days)
        learner_id = sid("learner", key)
        session.add(
            Subscription(
                id=sub_id,
                institution_id=inst_id,
                learner_id=learner_id,
                product_id=product_id,
                price_id=price_id,
                status=status,
                current_period_start=end - timedelta(days=30),
                current_period_end=end,
                grace_until=end + timedelta(days=7) if status is not SubscriptionStatus.ACTIVE else None,
            )
        )
        session.add(
            SubscriptionItem(
                id=sid("subscription_item", key), institution_id=inst_id, subscription_id=sub_id, price_id=price_id
            )
        )
        session.add(
            Entitlement(
                id=sid("entitlement", key),
                institution_id=inst_id,
                learner_id=learner_id,
                product_id=product_id,
                source=EntitlementSource.SUBSCRIPTION,
                source_id=sub_id,
                valid_from=end - timedelta(days=30),
                valid_until=end + timedelta(days=7) if status is not SubscriptionStatus.ACTIVE else end,
            )
        )
        await session.flush()


async def _seed_providers(session: AsyncSession, inst_id: uuid.UUID, simulator_url: str) -> None:
    accounts = [
        (Provider.MPESA, ProviderAccountKind.STK_PUSH, "174379", "mpesa_demo"),
        (Provider.MPESA, ProviderAccountKind.PAYBILL, "600000", "mpesa_demo"),
        (Provider.AIRTEL, ProviderAccountKind.COLLECTION, "DEMO-AIRTEL", "airtel_demo"),
    ]
    for provider, kind, shortcode, ref in accounts:
        account_id = sid("provider_account", provider.value, kind.value)
        await _ensure(
            session,
            ProviderAccount(
                id=account_id,
                institution_id=inst_id,
                provider=provider,
                kind=kind,
                shortcode=shortcode,
                base_url=simulator_url,
                credentials_ref=ref,
                environment="simulator",
            ),
        )


async def _seed_templates(session: AsyncSession, inst_id: uuid.UUID) -> None:
    for event, (en, sw) in TEMPLATES.items():
        for language, body in ((Language.EN, en), (Language.SW, sw)):
            await _ensure(
                session,
                NotificationTemplate(
                    id=template_id_for(inst_id, event, NotificationChannel.SMS, language),
                    institution_id=inst_id,
                    event=event,
                    channel=NotificationChannel.SMS,
                    language=language,
                    body=body,
                    variables=sorted(check_template(event_spec(event), body)),
                ),
            )


async def clear_demo(*, session: AsyncSession) -> None:
    """Remove everything the demo institution owns (bulk deletes: synced rows are
    otherwise soft-deleted, but demo data is not real data)."""
    inst_id = DEMO_INSTITUTION_ID
    entries = sa.select(JournalEntry.id).where(JournalEntry.institution_id == inst_id)
    await session.execute(sa.delete(Posting).where(Posting.entry_id.in_(entries)))
    demo_phones = list(
        await session.scalars(sa.select(Learner.phone_id).where(Learner.institution_id == inst_id).distinct())
    )
    for table in reversed(Base.metadata.sorted_tables):
        if table.name == "institutions":
            continue
        if "institution_id" in table.c:
            await session.execute(sa.delete(table).where(table.c.institution_id == inst_id))
    await session.execute(sa.delete(User).where(User.id.in_([sid("user", u.username) for u in DEMO_USERS])))
    await session.execute(sa.delete(Institution).where(Institution.id == inst_id))
    still_used = sa.select(Learner.phone_id).where(Learner.phone_id.is_not(None))
    await session.execute(
        sa.delete(Phone).where(Phone.id.in_([p for p in demo_phones if p]), Phone.id.not_in(still_used))
    )
    demo_user_ids = [sid("user", u.username) for u in DEMO_USERS]
    await session.execute(
        sa.delete(OutboxEntry).where(
            sa.or_(
                OutboxEntry.scope == str(inst_id),
                sa.and_(OutboxEntry.table_name == "users", OutboxEntry.row_id.in_(demo_user_ids)),
            )
        )
    )
    await session.execute(sa.delete(SyncCounter).where(SyncCounter.scope == str(inst_id)))
    await session.execute(sa.delete(NotificationTemplate).where(NotificationTemplate.institution_id == inst_id))
