"""MSISDN handling with ``phonenumbers``: Kenyan users type 07.., 01.., +254.. or 254.."""

from __future__ import annotations

from enum import StrEnum

import phonenumbers

from lms_domain.errors import InvalidInput


class Network(StrEnum):
    SAFARICOM = "safaricom"
    AIRTEL = "airtel"
    TELKOM = "telkom"
    OTHER = "other"


# Prefix ranges as allocated by the Communications Authority of Kenya. Numbers are
# portable, so this is a default for routing; the USSD networkCode wins when present.
_AIRTEL_PREFIXES = (
    "73",
    "750",
    "751",
    "752",
    "753",
    "754",
    "755",
    "756",
    "762",
    "780",
    "781",
    "782",
    "783",
    "784",
    "785",
    "786",
    "787",
    "788",
    "789",
    "100",
    "101",
    "102",
    "103",
    "104",
    "105",
    "106",
)
_TELKOM_PREFIXES = ("77",)


def normalize_msisdn(raw: str, *, region: str = "KE") -> str:
    """Return ``raw`` in E.164 (``+2547...``) or raise ``InvalidInput``."""
    text = raw.strip()
    if text.isdigit() and text.startswith("254"):
        text = "+" + text
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(f"{raw!r} is not a phone number", code="invalid_phone") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(f"{raw!r} is not a valid phone number", code="invalid_phone")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def network_of(e164: str) -> Network:
    """Guess the mobile network of a Kenyan E.164 number from its prefix."""
    if not e164.startswith("+254"):
        return Network.OTHER
    national = e164[4:]
    if national.startswith(_AIRTEL_PREFIXES):
        return Network.AIRTEL
    if national.startswith(_TELKOM_PREFIXES):
        return Network.TELKOM
    if national[:1] in {"7", "1"}:
        return Network.SAFARICOM
    return Network.OTHER


# Africa's Talking's networkCode (MCC+MNC) for Kenya; the sandbox's own code means nothing here.
NETWORK_CODES: dict[str, Network] = {
    "63902": Network.SAFARICOM,
    "63903": Network.AIRTEL,
    "63907": Network.TELKOM,
}


def network_from_code(code: str | None) -> Network | None:
    """The network a gateway's ``networkCode`` names, or None (then the prefix decides)."""
    return NETWORK_CODES.get((code or "").strip())


def code_for_network(network: Network) -> str | None:
    return next((code for code, known in NETWORK_CODES.items() if known is network), None)
