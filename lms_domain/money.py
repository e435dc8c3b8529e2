"""Money as integer minor units plus a currency; VAT derived from VAT-inclusive totals.

KES prices are whole shillings that already include VAT, so the amount a learner is
asked to pay is always a valid M-Pesa amount (an integer number of shillings). VAT is
*derived* from that total (total x rate / (100 + rate)) instead of being added on top,
which would produce cents M-Pesa cannot charge.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_domain.errors import InvalidInput

MINOR_PER_MAJOR = {"KES": 100, "UGX": 1, "TZS": 100, "USD": 100}
DEFAULT_VAT_RATE_BP = 1600  # 16.00 %, Kenya's standard rate, in basis points
MPESA_MIN_KES = 1
MPESA_MAX_KES = 250_000


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: str = "KES"

    def __post_init__(self) -> None:
        if self.currency not in MINOR_PER_MAJOR:
            raise InvalidInput(f"unsupported currency {self.currency!r}", code="invalid_currency")
        if self.amount_minor < 0:
            raise InvalidInput("amounts cannot be negative", code="negative_amount")

    @classmethod
    def kes(cls, shillings: int) -> Money:
        return cls(shillings * MINOR_PER_MAJOR["KES"], "KES")

    @property
    def major(self) -> int:
        """Whole major units; raises if the amount has a fractional part."""
        per = MINOR_PER_MAJOR[self.currency]
        whole, rest = divmod(self.amount_minor, per)
        if rest:
            raise InvalidInput(f"{self} is not a whole number of {self.currency}", code="fractional_amount")
        return whole

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise InvalidInput("cannot mix currencies", code="currency_mismatch")

    @property
    def figure(self) -> str:
        """The amount as people read it, without the currency: ``3,000`` or ``2,500.50``."""
        whole, rest = divmod(self.amount_minor, MINOR_PER_MAJOR[self.currency])
        return f"{whole:,}" + (f".{rest:02d}" if rest else "")

    def __str__(self) -> str:
        return f"{self.currency} {self.figure}"


@dataclass(frozen=True, slots=True)
class VatBreakdown:
    total: Money
    vat: Money
    net: Money
    rate_bp: int


def split_vat(total: Money, rate_bp: int = DEFAULT_VAT_RATE_BP) -> VatBreakdown:
    """Split a VAT-inclusive total into net and VAT, rounding VAT half-up to a minor unit."""
    if not 0 <= rate_bp <= 10_000:
        raise InvalidInput("VAT rate must be between 0 and 100 %", code="invalid_vat_rate")
    numerator = total.amount_minor * rate_bp
    denominator = 10_000 + rate_bp
    vat_minor = (2 * numerator + denominator) // (2 * denominator)
    vat = Money(vat_minor, total.currency)
    return VatBreakdown(total=total, vat=vat, net=total - vat, rate_bp=rate_bp)


def round_to_whole_kes(amount_minor: int) -> int:
    """Round a KES amount in cents half-up to whole shillings (what M-Pesa can charge)."""
    per = MINOR_PER_MAJOR["KES"]
    return ((amount_minor + per // 2) // per) * per


def is_valid_mpesa_amount(money: Money) -> bool:
    """True for KES amounts M-Pesa accepts: a whole number of shillings in range."""
    if money.currency != "KES" or money.amount_minor % MINOR_PER_MAJOR["KES"]:
        return False
    return MPESA_MIN_KES <= money.amount_minor // 100 <= MPESA_MAX_KES
