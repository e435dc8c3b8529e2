"""The database itself, not Python, enforces the model's rules, on SQLite and Postgres alike.

Every rejected write goes through ``assert_rejected``: the commit must raise
``IntegrityError`` naming the rule that fired, and a fresh session must then see the
table, the outbox and the sequence counters exactly as they were (nothing half-written).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lms_domain.changefeed.models import OutboxEntry, SyncCounter
from lms_domain.commerce.models import Coupon, Invoice, Order, Price, PriceInterval, Product, ProductKind
from lms_domain.courses.models import Enrollment, LessonProgress, Prerequisite
from lms_domain.db import Base
from lms_domain.ids import new_id
from lms_domain.payments.models import Payment, Provider, WebhookEvent
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User
from tests.conftest import T0
from tests.factories import CourseFixture, make_course, make_institution, make_learner

SPEC_TABLES = frozenset(
    {
        "institutions", "users", "learners", "phones", "entitlements", "courses", "sections", "lessons", "assets",
        "tags", "course_tags", "prerequisites", "enrollments", "lesson_progress", "quizzes", "questions",
        "question_choices", "attempts", "answers", "certificates", "products", "prices", "coupons", "orders",
        "line_items", "invoices", "receipts", "refunds", "provider_accounts", "payment_methods", "payment_intents",
        "payments", "webhook_events", "ledger_accounts", "journal_entries", "postings", "subscriptions",
        "subscription_items", "subscription_renewal_attempts", "dunning_schedules", "subscription_usage",
        "notification_templates", "notification_log", "notification_preferences",
    }
)  # fmt: skip

Sessionmaker = async_sessionmaker[AsyncSession]


@dataclass
class World:
    institution: Institution
    learner: Learner
    course: CourseFixture


@pytest.fixture
async def world(session: AsyncSession) -> World:
    """One committed institution with a learner and a one-lesson course."""
    institution = await make_institution(session)
    learner = await make_learner(session, institution=institution)
    course = await make_course(session, institution=institution, lessons=1, questions=0)
    await session.commit()
    return World(institution=institution, learner=learner, course=course)


async def _snapshot(sessionmaker: Sessionmaker, model: type[Base]) -> tuple[int, int, int]:
    """Rows in ``model``'s table, outbox entries and the sum of every sequence counter."""
    async with sessionmaker() as s:
        rows = await s.scalar(sa.select(sa.func.count()).select_from(model))
        outbox = await s.scalar(sa.select(sa.func.count()).select_from(OutboxEntry))
        counters = await s.scalar(sa.select(sa.func.coalesce(sa.func.sum(SyncCounter.value), 0)))
    return int(rows or 0), int(outbox or 0), int(counters or 0)


async def assert_rejected(sessionmaker: Sessionmaker, row: Base, *fragments: str) -> None:
    """Committing ``row`` fails with an error naming ``fragments``, and leaves no trace."""
    before = await _snapshot(sessionmaker, type(row))
    async with sessionmaker() as s:
        s.add(row)
        with pytest.raises(IntegrityError) as excinfo:
            await s.commit()
    message = str(excinfo.value.orig).lower()
    for fragment in fragments:
        assert fragment.lower() in message, f"{fragment!r} not in {message!r}"
    assert await _snapshot(sessionmaker, type(row)) == before


async def insert_ok(sessionmaker: Sessionmaker, *rows: Base) -> None:
    async with sessionmaker() as s:
        s.add_all(rows)
        await s.commit()


def _enrollment(world: World, **overrides: object) -> Enrollment:
    values: dict[str, object] = {
        "id": new_id(),
        "institution_id": world.institution.id,
        "learner_id": world.learner.id,
        "course_id": world.course.course.id,
        "enrolled_at": T0,
    }
    values.update(overrides)
    return Enrollment(**values)


# --- tables -------------------------------------------------------------------------------------


async def test_every_spec_entity_is_mapped_and_migrated(engine: AsyncEngine) -> None:
    mapped = set(Base.metadata.tables)
    assert SPEC_TABLES - mapped == set(), "entities missing from the models"

    async with engine.connect() as conn:
        migrated = await conn.run_sync(lambda sync_conn: set(sa.inspect(sync_conn).get_table_names()))
    assert SPEC_TABLES - migrated == set(), "entities missing from the migrated database"
    assert {"sync_outbox", "sync_counters"} <= migrated


# --- unique constraints -------------------------------------------------------------------------


async def test_one_enrollment_per_learner_and_course_even_with_different_ids(
    sessionmaker: Sessionmaker, world: World
) -> None:
    await insert_ok(sessionmaker, _enrollment(world))
    await assert_rejected(sessionmaker, _enrollment(world), "enrollments", "learner_id", "course_id")


async def test_webhook_event_unique_per_provider_key_and_body_hash(sessionmaker: Sessionmaker) -> None:
    def event(body: str, provider: Provider = Provider.MPESA) -> WebhookEvent:
        return WebhookEvent(
            id=new_id(),
            provider=provider,
            kind="stk_callback",
            event_key="ws_CO_27112026100000001",
            body_sha256=hashlib.sha256(body.encode()).hexdigest(),
            body=body,
            received_at=T0,
        )

    paid, contradiction = '{"ResultCode": 0}', '{"ResultCode": 1032}'
    await insert_ok(sessionmaker, event(paid))
    await assert_rejected(sessionmaker, event(paid), "webhook_events", "event_key", "body_sha256")
    # A contradicting body for the same event is evidence for reconciliation: kept, not collapsed.
    await insert_ok(sessionmaker, event(contradiction))
    await insert_ok(sessionmaker, event(paid, provider=Provider.AIRTEL))

    async with sessionmaker() as s:
        bodies = (await s.scalars(sa.select(WebhookEvent.body).where(WebhookEvent.provider == Provider.MPESA))).all()
    assert sorted(bodies) == sorted([paid, contradiction])


async def test_one_payment_per_provider_receipt(sessionmaker: Sessionmaker, world: World) -> None:
    def payment(provider: Provider = Provider.MPESA) -> Payment:
        return Payment(
            id=new_id(),
            institution_id=world.institution.id,
            learner_id=world.learner.id,
            provider=provider,
            provider_receipt="SKR3ABCD12",
            amount_minor=50_000,
            paid_at=T0,
        )

    await insert_ok(sessionmaker, payment())
    await assert_rejected(sessionmaker, payment(), "payments", "provider_receipt")
    await insert_ok(sessionmaker, payment(Provider.AIRTEL))  # receipts are unique per provider only


async def test_phone_e164_is_unique(sessionmaker: Sessionmaker) -> None:
    await insert_ok(sessionmaker, Phone(id=new_id(), e164="+254712345678"))
    await assert_rejected(sessionmaker, Phone(id=new_id(), e164="+254712345678"), "phones", "e164")


async def test_learner_account_no_is_unique(sessionmaker: Sessionmaker, world: World) -> None:
    twin = Learner(
        id=new_id(),
        institution_id=world.institution.id,
        display_name="Kamau Twin",
        account_no=world.learner.account_no,
    )
    await assert_rejected(sessionmaker, twin, "learners", "account_no")


# --- foreign keys -------------------------------------------------------------------------------


async def test_foreign_keys_are_enforced(sessionmaker: Sessionmaker, world: World) -> None:
    # SQLite ignores foreign keys unless every connection turns them on.
    await assert_rejected(sessionmaker, _enrollment(world, learner_id=new_id()), "foreign key constraint")


# --- check constraints --------------------------------------------------------------------------


@pytest.fixture
async def product(sessionmaker: Sessionmaker) -> Product:
    row = Product(id=new_id(), sku="SUB-MONTH", kind=ProductKind.SUBSCRIPTION, name_en="All courses")
    await insert_ok(sessionmaker, row)
    return row


def _price(product: Product, amount_minor: int, currency: str = "KES") -> Price:
    return Price(
        id=new_id(), product_id=product.id, currency=currency, amount_minor=amount_minor, interval=PriceInterval.MONTH
    )


async def test_price_amount_is_not_negative(sessionmaker: Sessionmaker, product: Product) -> None:
    await insert_ok(sessionmaker, _price(product, 0))
    await assert_rejected(sessionmaker, _price(product, -100), "ck_prices_amount_non_negative")


async def test_kes_price_is_whole_shillings(sessionmaker: Sessionmaker, product: Product) -> None:
    await insert_ok(sessionmaker, _price(product, 15_000), _price(product, 150, currency="USD"))
    await assert_rejected(sessionmaker, _price(product, 150), "ck_prices_whole_kes")


async def test_invoice_vat_plus_net_is_total(sessionmaker: Sessionmaker, world: World) -> None:
    order = Order(
        id=new_id(),
        institution_id=world.institution.id,
        learner_id=world.learner.id,
        subtotal_minor=11_600,
        total_minor=11_600,
    )
    await insert_ok(sessionmaker, order)

    def invoice(number: str, net_minor: int) -> Invoice:
        return Invoice(
            id=new_id(),
            institution_id=world.institution.id,
            order_id=order.id,
            number=number,
            total_minor=11_600,
            vat_minor=1_600,
            net_minor=net_minor,
            issued_at=T0,
        )

    await assert_rejected(sessionmaker, invoice("INV-1", 10_001), "ck_invoices_vat_plus_net_is_total")
    await insert_ok(sessionmaker, invoice("INV-1", 10_000))


async def test_institution_vat_rate_at_most_100_percent(sessionmaker: Sessionmaker) -> None:
    await insert_ok(sessionmaker, Institution(id=new_id(), name="Max VAT", code="VAT1", vat_rate_bp=10_000))
    await assert_rejected(
        sessionmaker,
        Institution(id=new_id(), name="Too much VAT", code="VAT2", vat_rate_bp=20_000),
        "ck_institutions_vat_rate_in_range",
    )


async def test_user_role_matches_tenancy(sessionmaker: Sessionmaker, world: World) -> None:
    def user(role: Role, institution_id: object) -> User:
        return User(
            id=new_id(),
            username=f"u-{new_id().hex[-8:]}",
            role=role,
            institution_id=institution_id,
            password_hash="argon2id$not-a-real-hash",
        )

    inst_id = world.institution.id
    await insert_ok(sessionmaker, user(Role.PLATFORM_ADMIN, None), user(Role.INSTRUCTOR, inst_id))
    await assert_rejected(sessionmaker, user(Role.PLATFORM_ADMIN, inst_id), "ck_users_role_matches_tenancy")
    await assert_rejected(sessionmaker, user(Role.INSTRUCTOR, None), "ck_users_role_matches_tenancy")


async def test_lesson_progress_percent_at_most_100(sessionmaker: Sessionmaker, world: World) -> None:
    def progress(percent: int) -> LessonProgress:
        return LessonProgress(
            id=new_id(),
            institution_id=world.institution.id,
            learner_id=world.learner.id,
            lesson_id=world.course.lessons[0].id,
            course_id=world.course.course.id,
            percent=percent,
            first_seen_at=T0,
            last_seen_at=T0,
        )

    await assert_rejected(sessionmaker, progress(101), "ck_lesson_progress_percent_in_range")
    await insert_ok(sessionmaker, progress(100))


async def test_prerequisite_cannot_require_itself(sessionmaker: Sessionmaker, world: World) -> None:
    course_id = world.course.course.id
    looped = Prerequisite(
        id=new_id(), institution_id=world.institution.id, course_id=course_id, required_course_id=course_id
    )
    await assert_rejected(sessionmaker, looped, "ck_prerequisites_not_self")


async def test_coupon_has_exactly_one_discount_kind(sessionmaker: Sessionmaker, world: World) -> None:
    def coupon(code: str, percent_off: int | None, amount_off_minor: int | None) -> Coupon:
        return Coupon(
            id=new_id(),
            institution_id=world.institution.id,
            code=code,
            percent_off=percent_off,
            amount_off_minor=amount_off_minor,
        )

    await insert_ok(sessionmaker, coupon("TENOFF", 10, None), coupon("KES100", None, 10_000))
    await assert_rejected(sessionmaker, coupon("BOTH", 10, 10_000), "ck_coupons_one_discount_kind")
    await assert_rejected(sessionmaker, coupon("NEITHER", None, None), "ck_coupons_one_discount_kind")


# --- timestamps ---------------------------------------------------------------------------------


async def test_naive_datetime_is_refused_at_flush(sessionmaker: Sessionmaker, world: World) -> None:
    before = await _snapshot(sessionmaker, Enrollment)
    async with sessionmaker() as s:
        s.add(_enrollment(world, enrolled_at=datetime(2026, 11, 27, 10, 0)))
        with pytest.raises(StatementError) as excinfo:
            await s.flush()
    assert isinstance(excinfo.value.orig, ValueError)
    assert "naive" in str(excinfo.value.orig)
    assert await _snapshot(sessionmaker, Enrollment) == before


async def test_aware_datetime_round_trips_as_the_same_instant_in_utc(sessionmaker: Sessionmaker, world: World) -> None:
    nairobi_10am = datetime(2026, 11, 27, 10, 0, tzinfo=timezone(timedelta(hours=3)))
    enrollment = _enrollment(world, enrolled_at=nairobi_10am)
    await insert_ok(sessionmaker, enrollment)

    async with sessionmaker() as s:
        stored = await s.scalar(sa.select(Enrollment.enrolled_at).where(Enrollment.id == enrollment.id))
    assert stored == datetime(2026, 11, 27, 7, 0, tzinfo=UTC)
    assert stored is not None
    assert stored.utcoffset() == timedelta(0)
