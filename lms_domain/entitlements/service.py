"""Reading entitlements. Writing them belongs to the payment and subscription flows."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.commerce.models import Product, ProductKind
from lms_domain.courses.models import Course
from lms_domain.entitlements.models import Entitlement, EntitlementSource
from lms_domain.ids import new_id


async def has_active_entitlement(
    *, session: AsyncSession, learner_id: uuid.UUID, course_id: uuid.UUID, at: datetime
) -> bool:
    """True if, at ``at``, the learner holds the course itself, a product for it, or a
    subscription sold by the course's owner (a school's subscription covers that school's
    paid courses; a catalogue subscription covers the paid catalogue)."""
    course_owner = sa.select(Course.institution_id).where(Course.id == course_id).scalar_subquery()
    grants_course = sa.or_(
        Entitlement.course_id == course_id,
        Product.course_id == course_id,
        sa.and_(Product.kind == ProductKind.SUBSCRIPTION, Product.institution_id.is_not_distinct_from(course_owner)),
    )
    stmt = (
        sa.select(Entitlement.id)
        .outerjoin(Product, Product.id == Entitlement.product_id)
        .where(
            Entitlement.learner_id == learner_id,
            Entitlement.revoked_at.is_(None),
            Entitlement.deleted_at.is_(None),
            Entitlement.valid_from <= at,
            sa.or_(Entitlement.valid_until.is_(None), Entitlement.valid_until > at),
            grants_course,
        )
        .limit(1)
    )
    return (await session.scalar(stmt)) is not None


async def subscription_entitlement(session: AsyncSession, subscription_id: uuid.UUID) -> Entitlement | None:
    """The entitlement a subscription grants now: its latest (a downgrade opens a new one)."""
    stmt = (
        sa.select(Entitlement)
        .where(Entitlement.source == EntitlementSource.SUBSCRIPTION, Entitlement.source_id == subscription_id)
        .order_by(Entitlement.valid_from.desc())
        .limit(1)
    )
    return await session.scalar(stmt)


def grant_subscription(
    session: AsyncSession,
    *,
    institution_id: uuid.UUID,
    learner_id: uuid.UUID,
    product_id: uuid.UUID,
    subscription_id: uuid.UUID,
    valid_from: datetime,
    valid_until: datetime,
) -> Entitlement:
    """A new entitlement to ``product_id`` from a subscription (added to the session)."""
    entitlement = Entitlement(
        id=new_id(),
        institution_id=institution_id,
        learner_id=learner_id,
        product_id=product_id,
        source=EntitlementSource.SUBSCRIPTION,
        source_id=subscription_id,
        valid_from=valid_from,
        valid_until=valid_until,
    )
    session.add(entitlement)
    return entitlement
