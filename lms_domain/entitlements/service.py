"""Reading entitlements. Writing them belongs to the payment and subscription flows."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.commerce.models import Product, ProductKind
from lms_domain.courses.models import Course
from lms_domain.entitlements.models import Entitlement


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
