"""Checkout arithmetic: whatever the cart and the coupon, the learner is asked for an
amount M-Pesa can collect (or nothing), VAT and net add up, and no discount exceeds
what was bought."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lms_domain.commerce.checkout import Discount, PricingLine, price_cart
from lms_domain.errors import InvalidInput
from lms_domain.money import MPESA_MAX_KES, Money, is_valid_mpesa_amount, split_vat

PRODUCTS = [uuid.UUID(int=n) for n in range(1, 4)]

lines = st.lists(
    st.builds(
        PricingLine,
        unit_amount_minor=st.integers(0, MPESA_MAX_KES).map(lambda shillings: shillings * 100),
        quantity=st.integers(1, 10),
        product_id=st.sampled_from(PRODUCTS),
    ),
    min_size=1,
    max_size=20,
)
discounts = st.one_of(
    st.none(),
    st.builds(Discount, percent_off=st.integers(1, 100), product_id=st.sampled_from([None, *PRODUCTS])),
    st.builds(
        Discount,
        amount_off_minor=st.integers(1, MPESA_MAX_KES).map(lambda shillings: shillings * 100),
        product_id=st.sampled_from([None, *PRODUCTS]),
    ),
)
vat_rates = st.sampled_from([0, 800, 1600, 10_000]) | st.integers(0, 10_000)


@given(lines=lines, discount=discounts, vat_rate_bp=vat_rates)
@example(lines=[PricingLine(33_300, 1, PRODUCTS[0])], discount=Discount(percent_off=15), vat_rate_bp=1600)
@example(lines=[PricingLine(MPESA_MAX_KES * 100, 2, PRODUCTS[0])], discount=Discount(percent_off=50), vat_rate_bp=1600)
@example(lines=[PricingLine(100, 1, PRODUCTS[0])], discount=Discount(percent_off=50), vat_rate_bp=1600)
def test_every_checkout_is_chargeable_or_refused(
    lines: list[PricingLine], discount: Discount | None, vat_rate_bp: int
) -> None:
    subtotal = sum(line.unit_amount_minor * line.quantity for line in lines)
    try:
        cart = price_cart(lines, discount=discount, vat_rate_bp=vat_rate_bp)
    except InvalidInput as exc:
        refused: InvalidInput | None = exc
    else:
        refused = None
    if refused is not None:
        if refused.code == "invalid_coupon":
            # Only a coupon for a product that is not in the cart is refused as such.
            assert discount is not None and discount.product_id not in {line.product_id for line in lines}
        else:
            assert refused.code == "amount_above_mpesa_limit"
            assert subtotal > MPESA_MAX_KES * 100
        return
    assert cart.total_minor == 0 or is_valid_mpesa_amount(Money(cart.total_minor))
    assert cart.vat_minor + cart.net_minor == cart.total_minor
    assert cart.vat_minor >= 0 and cart.net_minor >= 0
    assert 0 <= cart.discount_minor <= cart.subtotal_minor == subtotal
    assert cart.subtotal_minor - cart.discount_minor == cart.total_minor
    assert cart.discount_minor % 100 == 0
    assert cart.vat_minor == split_vat(Money(cart.total_minor), vat_rate_bp).vat.amount_minor
    if discount is None:
        assert cart.discount_minor == 0
    elif discount.product_id is not None:
        eligible = sum(
            line.unit_amount_minor * line.quantity for line in lines if line.product_id == discount.product_id
        )
        assert cart.discount_minor <= eligible


def test_monthly_premium_splits_vat_like_the_kra_receipt() -> None:
    cart = price_cart([PricingLine(30_000, 1)], discount=None, vat_rate_bp=1600)
    assert (cart.total_minor, cart.vat_minor, cart.net_minor) == (30_000, 4_138, 25_862)


def test_a_percentage_coupon_rounds_the_total_to_whole_shillings() -> None:
    # 15 % of KES 333 is KES 49.95: the learner pays KES 283, not 283.05.
    cart = price_cart([PricingLine(33_300, 1)], discount=Discount(percent_off=15), vat_rate_bp=1600)
    assert (cart.subtotal_minor, cart.discount_minor, cart.total_minor) == (33_300, 5_000, 28_300)


def test_an_amount_coupon_never_takes_more_than_the_cart() -> None:
    cart = price_cart([PricingLine(10_000, 1)], discount=Discount(amount_off_minor=50_000), vat_rate_bp=1600)
    assert (cart.discount_minor, cart.total_minor, cart.vat_minor, cart.net_minor) == (10_000, 0, 0, 0)


def test_above_the_mpesa_limit_is_refused_unless_the_coupon_brings_it_under() -> None:
    big = [PricingLine(200_000 * 100, 2)]
    with pytest.raises(InvalidInput) as refused:
        price_cart(big, discount=None, vat_rate_bp=1600)
    assert refused.value.code == "amount_above_mpesa_limit"
    cart = price_cart(big, discount=Discount(percent_off=50), vat_rate_bp=1600)
    assert cart.total_minor == 200_000 * 100


def test_fractional_shillings_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        price_cart([PricingLine(30_050, 1)], discount=None, vat_rate_bp=1600)
    assert refused.value.code == "fractional_amount"
