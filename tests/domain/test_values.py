"""Property tests for the pure building blocks: money, VAT, ids, codes, clocks, phones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms_domain.changefeed.hlc import HybridLogicalClock, unpack
from lms_domain.clock import FixedClock, to_nairobi
from lms_domain.errors import InvalidInput
from lms_domain.ids import luhn_valid, natural_id, new_id
from lms_domain.money import Money, is_valid_mpesa_amount, round_to_whole_kes, split_vat
from lms_domain.phones import Network, network_of, normalize_msisdn
from lms_domain.tenancy.service import account_no_for

shillings = st.integers(min_value=0, max_value=250_000)
rates = st.integers(min_value=0, max_value=10_000)


@given(total=shillings, rate=rates)
def test_vat_split_is_exact_to_the_cent(total: int, rate: int) -> None:
    money = Money.kes(total)
    split = split_vat(money, rate)
    assert split.vat.amount_minor + split.net.amount_minor == money.amount_minor
    exact = Fraction(money.amount_minor * rate, 10_000 + rate)
    assert abs(split.vat.amount_minor - exact) <= Fraction(1, 2)
    assert 0 <= split.vat.amount_minor <= money.amount_minor


def test_vat_on_a_300_shilling_subscription() -> None:
    split = split_vat(Money.kes(300))
    assert (split.vat.amount_minor, split.net.amount_minor) == (4138, 25862)  # 41.38 + 258.62 = 300.00


@given(rate=st.one_of(st.integers(max_value=-1), st.integers(min_value=10_001)))
def test_vat_rate_out_of_range_is_refused(rate: int) -> None:
    with pytest.raises(InvalidInput):
        split_vat(Money.kes(100), rate)


@given(cents=st.integers(min_value=0, max_value=25_000_000))
def test_rounding_to_whole_shillings(cents: int) -> None:
    rounded = round_to_whole_kes(cents)
    assert rounded % 100 == 0 and abs(rounded - cents) <= 50


@given(amount=st.integers(min_value=-(10**9), max_value=10**9))
def test_mpesa_amount_rule(amount: int) -> None:
    if amount < 0:
        with pytest.raises(InvalidInput):
            Money(amount)
        return
    expected = amount % 100 == 0 and 1 <= amount // 100 <= 250_000
    assert is_valid_mpesa_amount(Money(amount)) is expected


def test_money_refuses_mixing_currencies_and_fractions() -> None:
    with pytest.raises(InvalidInput):
        _ = Money(100, "KES") + Money(100, "USD")
    with pytest.raises(InvalidInput):
        _ = Money(150).major
    assert str(Money.kes(3000)) == "KES 3,000"


@given(parts=st.lists(st.one_of(st.uuids(), st.text(max_size=10), st.integers()), min_size=1, max_size=3))
def test_natural_ids_are_deterministic_and_table_scoped(parts: list[object]) -> None:
    assert natural_id("enrollment", *parts) == natural_id("enrollment", *parts)
    assert natural_id("enrollment", *parts) != natural_id("lesson_progress", *parts)


def test_new_ids_are_time_ordered_uuid7() -> None:
    ids = [new_id() for _ in range(200)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids, key=lambda u: u.bytes)


@given(learner_id=st.uuids())
def test_account_numbers_fit_mpesa_and_carry_a_check_digit(learner_id: uuid.UUID) -> None:
    number = account_no_for(learner_id)
    assert len(number) == 10 <= 12 and number.isdigit()
    assert luhn_valid(number)
    typo = number[:-2] + str((int(number[-2]) + 1) % 10) + number[-1]
    assert not luhn_valid(typo)


@given(
    jumps=st.lists(st.integers(min_value=-(10**10), max_value=10**10), min_size=1, max_size=30),
    remotes=st.lists(st.integers(min_value=0, max_value=2**62), max_size=5),
)
def test_hlc_never_goes_backwards_whatever_the_wall_clock_does(jumps: list[int], remotes: list[int]) -> None:
    clock = FixedClock(datetime(2026, 1, 1, tzinfo=UTC))
    hlc = HybridLogicalClock(clock)
    seen = [hlc.tick()]
    for i, jump in enumerate(jumps):
        clock.advance(timedelta(milliseconds=jump))
        if i < len(remotes):
            value = hlc.observe(remotes[i])
            assert value > remotes[i]
        else:
            value = hlc.tick()
        assert value > seen[-1]
        seen.append(value)


def test_hlc_tracks_wall_time_when_clocks_agree() -> None:
    clock = FixedClock(datetime(2026, 11, 27, tzinfo=UTC))
    hlc = HybridLogicalClock(clock)
    physical, logical = unpack(hlc.tick())
    assert physical == int(clock.now().timestamp() * 1000) and logical == 0
    assert unpack(hlc.tick()) == (physical, 1)


@pytest.mark.parametrize(
    ("raw", "e164", "network"),
    [
        ("0712345678", "+254712345678", Network.SAFARICOM),
        ("254712345678", "+254712345678", Network.SAFARICOM),
        ("+254 110 123456", "+254110123456", Network.SAFARICOM),
        ("0733123456", "+254733123456", Network.AIRTEL),
        ("0101234567", "+254101234567", Network.AIRTEL),
        ("0771234567", "+254771234567", Network.TELKOM),
    ],
)
def test_msisdns_normalise_to_e164(raw: str, e164: str, network: Network) -> None:
    assert normalize_msisdn(raw) == e164
    assert network_of(e164) is network


@pytest.mark.parametrize("raw", ["", "hello", "0712", "07123456789999", "+1 202"])
def test_bad_msisdns_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        normalize_msisdn(raw)
    assert refused.value.code == "invalid_phone"


def test_people_see_nairobi_time() -> None:
    assert to_nairobi(datetime(2026, 11, 27, 21, 30, tzinfo=UTC)).hour == 0
    with pytest.raises(ValueError, match="naive"):
        to_nairobi(datetime(2026, 11, 27))
