"""What is for sale: products, their prices, and the coupons that discount them.

Institution admins sell their own courses and subscriptions; platform admins run the
shared catalogue (rows with no institution) that every school's learners can buy.
Learners and instructors only ever see what is on sale (active rows).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, catalog_filter, ensure_visible, owning_institution, tenant_filter
from lms_domain.clock import Clock
from lms_domain.commerce.models import Coupon, Price, PriceInterval, Product, ProductKind
from lms_domain.commerce.schemas import (
    CouponCreate,
    CouponListQuery,
    CouponUpdate,
    PriceCreate,
    PriceListQuery,
    ProductCreate,
    ProductListQuery,
    ProductUpdate,
)
from lms_domain.courses.models import Course
from lms_domain.db import apply_changes
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lms_domain.ids import new_id
from lms_domain.pagination import paginate
from lms_domain.tenancy.models import Institution

# A course is bought once; a subscription renews. Mixing them would either charge a
# course every month or sell a subscription that never renews.
INTERVALS_BY_KIND = {
    ProductKind.COURSE: frozenset({PriceInterval.ONE_TIME}),
    ProductKind.SUBSCRIPTION: frozenset({PriceInterval.MONTH, PriceInterval.YEAR}),
}


def ensure_sellable_by(row: Product | Price | None, actor: Actor, *, what: str) -> None:
    """404 outside the actor's tenant; 403 unless an admin, and a platform admin for the catalogue."""
    ensure_visible(row, actor, catalog=True, what=what)
    assert row is not None
    actor.require_admin()
    if row.institution_id is None and not actor.is_platform_admin:
        raise PermissionDenied("the shared catalogue is edited by platform admins")


async def _existing_institution(session: AsyncSession, institution_id: uuid.UUID | None) -> None:
    if institution_id is not None and await session.get(Institution, institution_id) is None:
        raise NotFound("institution not found")


# Products -------------------------------------------------------------------------------


async def list_products(
    *, session: AsyncSession, actor: Actor, query: ProductListQuery
) -> tuple[Sequence[Product], str | None]:
    stmt = sa.select(Product).where(Product.deleted_at.is_(None))
    stmt = catalog_filter(stmt, Product.institution_id, actor)
    if not actor.is_admin:
        stmt = stmt.where(Product.is_active.is_(True))
    elif query.is_active is not None:
        stmt = stmt.where(Product.is_active.is_(query.is_active))
    if query.kind is not None:
        stmt = stmt.where(Product.kind == query.kind)
    return await paginate(session, stmt, Product.id, cursor=query.cursor, limit=query.limit)


async def get_product(*, session: AsyncSession, actor: Actor, product_id: uuid.UUID) -> Product:
    """Admins see withdrawn products too (to put them back on sale); others only active ones."""
    product = await session.get(Product, product_id)
    ensure_visible(product, actor, catalog=True, what="product")
    assert product is not None
    if not product.is_active and not actor.is_admin:
        raise NotFound("product not found")
    return product


async def _check_course(
    session: AsyncSession, actor: Actor, owner: uuid.UUID | None, kind: ProductKind, course_id: uuid.UUID | None
) -> None:
    if kind is not ProductKind.COURSE:
        if course_id is not None:
            raise InvalidInput("only course products name a course", code="course_not_allowed")
        return
    if course_id is None:
        raise InvalidInput("a course product needs course_id", code="course_required")
    course = await session.get(Course, course_id)
    ensure_visible(course, actor, catalog=True, what="course")
    assert course is not None
    # A product sold to another audience than the course's would sell something its
    # buyers cannot open: school products sell school courses, the catalogue its own.
    if course.institution_id != owner:
        raise InvalidInput("the course belongs to another owner than the product", code="course_not_in_scope")


async def _check_downgrade(
    session: AsyncSession,
    actor: Actor,
    *,
    owner: uuid.UUID | None,
    kind: ProductKind,
    downgrade_to_id: uuid.UUID | None,
    product_id: uuid.UUID | None,
) -> None:
    if downgrade_to_id is None:
        return
    if kind is not ProductKind.SUBSCRIPTION:
        raise InvalidInput("only subscriptions fall back to another product", code="invalid_downgrade")
    if downgrade_to_id == product_id:
        raise InvalidInput("a product cannot fall back to itself", code="invalid_downgrade")
    target = await session.get(Product, downgrade_to_id)
    ensure_visible(target, actor, catalog=True, what="downgrade product")
    assert target is not None
    if target.institution_id not in (owner, None):
        raise InvalidInput("the fallback product belongs to another institution", code="invalid_downgrade")


async def _sku_taken(
    session: AsyncSession, owner: uuid.UUID | None, sku: str, exclude: uuid.UUID | None = None
) -> bool:
    same_owner = Product.institution_id.is_(None) if owner is None else Product.institution_id == owner
    stmt = sa.select(Product.id).where(same_owner, Product.sku == sku, Product.deleted_at.is_(None))
    if exclude is not None:
        stmt = stmt.where(Product.id != exclude)
    return (await session.scalar(stmt.limit(1))) is not None


async def create_product(*, session: AsyncSession, actor: Actor, data: ProductCreate) -> Product:
    actor.require_admin()
    owner = owning_institution(actor, data.institution_id)
    await _existing_institution(session, owner)
    await _check_course(session, actor, owner, data.kind, data.course_id)
    await _check_downgrade(
        session, actor, owner=owner, kind=data.kind, downgrade_to_id=data.downgrade_to_id, product_id=None
    )
    if await _sku_taken(session, owner, data.sku):
        raise Conflict(f"a product with SKU {data.sku!r} exists", code="sku_taken")
    product = Product(id=new_id(), institution_id=owner, **data.model_dump(exclude={"institution_id"}))
    session.add(product)
    await session.flush()
    return product


async def update_product(*, session: AsyncSession, actor: Actor, product_id: uuid.UUID, data: ProductUpdate) -> Product:
    product = await session.get(Product, product_id)
    ensure_sellable_by(product, actor, what="product")
    assert product is not None
    changes = data.model_dump(exclude_unset=True)
    if changes.get("downgrade_to_id") is not None:
        await _check_downgrade(
            session,
            actor,
            owner=product.institution_id,
            kind=product.kind,
            downgrade_to_id=changes["downgrade_to_id"],
            product_id=product.id,
        )
    apply_changes(product, changes)
    await session.flush()
    return product


# Prices ---------------------------------------------------------------------------------


async def list_prices(
    *, session: AsyncSession, actor: Actor, product_id: uuid.UUID, query: PriceListQuery
) -> tuple[Sequence[Price], str | None]:
    product = await get_product(session=session, actor=actor, product_id=product_id)
    stmt = sa.select(Price).where(Price.product_id == product.id, Price.deleted_at.is_(None))
    if not actor.is_admin:
        stmt = stmt.where(Price.is_active.is_(True))
    elif query.is_active is not None:
        stmt = stmt.where(Price.is_active.is_(query.is_active))
    return await paginate(session, stmt, Price.id, cursor=query.cursor, limit=query.limit)


async def create_price(*, session: AsyncSession, actor: Actor, product_id: uuid.UUID, data: PriceCreate) -> Price:
    product = await session.get(Product, product_id)
    ensure_sellable_by(product, actor, what="product")
    assert product is not None
    if data.interval not in INTERVALS_BY_KIND[product.kind]:
        allowed = ", ".join(sorted(i.value for i in INTERVALS_BY_KIND[product.kind]))
        raise InvalidInput(f"a {product.kind.value} product is priced {allowed}", code="interval_mismatch")
    price = Price(id=new_id(), institution_id=product.institution_id, product_id=product.id, **data.model_dump())
    session.add(price)
    await session.flush()
    return price


async def set_price_active(*, session: AsyncSession, actor: Actor, price_id: uuid.UUID, is_active: bool) -> Price:
    """The only change a price takes: orders refer to it, so its amount never moves.
    A new amount is a new price; withdraw the old one."""
    price = await session.get(Price, price_id)
    ensure_sellable_by(price, actor, what="price")
    assert price is not None
    price.is_active = is_active
    await session.flush()
    return price


# Coupons --------------------------------------------------------------------------------


async def list_coupons(
    *, session: AsyncSession, actor: Actor, query: CouponListQuery
) -> tuple[Sequence[Coupon], str | None]:
    actor.require_admin()
    stmt = tenant_filter(sa.select(Coupon), Coupon.institution_id, actor)
    if query.is_active is not None:
        stmt = stmt.where(Coupon.is_active.is_(query.is_active))
    return await paginate(session, stmt, Coupon.id, cursor=query.cursor, limit=query.limit)


async def get_coupon(*, session: AsyncSession, actor: Actor, coupon_id: uuid.UUID, for_update: bool = False) -> Coupon:
    """Admins only, checked before the lookup: a learner learns nothing about any code."""
    actor.require_admin()
    stmt = sa.select(Coupon).where(Coupon.id == coupon_id)
    if for_update:  # checkouts redeem concurrently; the cap must not slip under them
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    coupon = await session.scalar(stmt)
    ensure_visible(coupon, actor, what="coupon")
    assert coupon is not None
    return coupon


async def create_coupon(*, session: AsyncSession, actor: Actor, data: CouponCreate, clock: Clock) -> Coupon:
    actor.require_admin()
    owner = owning_institution(actor, data.institution_id)
    if owner is None:
        raise InvalidInput("a coupon belongs to one institution: give institution_id", code="institution_required")
    await _existing_institution(session, owner)
    if data.product_id is not None:
        product = await session.get(Product, data.product_id)
        if product is None or product.deleted_at is not None or product.institution_id not in (owner, None):
            raise NotFound("product not found")
    taken = await session.scalar(
        sa.select(Coupon.id).where(Coupon.institution_id == owner, Coupon.code == data.code).limit(1)
    )
    if taken is not None:
        raise Conflict(f"the code {data.code!r} is taken", code="coupon_code_taken")
    now = clock.now()
    coupon = Coupon(
        id=new_id(),
        institution_id=owner,
        currency="KES",
        times_redeemed=0,
        created_at=now,
        updated_at=now,
        **data.model_dump(exclude={"institution_id"}),
    )
    session.add(coupon)
    await session.flush()
    return coupon


async def update_coupon(
    *, session: AsyncSession, actor: Actor, coupon_id: uuid.UUID, data: CouponUpdate, clock: Clock
) -> Coupon:
    coupon = await get_coupon(session=session, actor=actor, coupon_id=coupon_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("is_active") is not None:
        coupon.is_active = changes["is_active"]
    if "valid_until" in changes:
        until = changes["valid_until"]
        if until is not None and coupon.valid_from is not None and until <= coupon.valid_from:
            raise InvalidInput("valid_until must be after valid_from", code="invalid_validity")
        coupon.valid_until = until
    if "max_redemptions" in changes:
        cap = changes["max_redemptions"]
        if cap is not None and cap < coupon.times_redeemed:
            raise InvalidInput(
                f"the code was already redeemed {coupon.times_redeemed} times",
                code="max_below_redeemed",
                times_redeemed=coupon.times_redeemed,
            )
        coupon.max_redemptions = cap
    coupon.updated_at = clock.now()
    await session.flush()
    return coupon
