"""GSM 03.38 (3GPP TS 23.038) helpers: what an SMS or USSD text costs, and how to keep it cheap.

A single character outside the GSM-7 default alphabet (a smart quote pasted from a word
processor, an emoji in a learner's name) switches the *whole* message to UCS-2, where a part
holds 70 characters instead of 160, so a one-part reminder silently becomes three paid parts.
Templates are checked with ``is_gsm7``/``sms_segments``; user-supplied text is passed through
``to_gsm7`` before it is interpolated.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

# The default alphabet, in table order (0x00-0x7F). 0x1B is the escape to the extension table,
# not a character, so it is left out.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
# Reached through the escape, so each costs two septets. Form feed is the page break.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE = 160
GSM7_PART = 153  # 7 septets of every part go to the concatenation header
UCS2_SINGLE = 70
UCS2_PART = 67

Encoding = Literal["GSM-7", "UCS-2"]

# Characters people paste that have a plain GSM-7 look-alike; checked before NFKD, which would
# turn some of them (the acute accent, the ellipsis) into something worse or longer than needed.
_LOOKALIKES: dict[str, str] = {
    **dict.fromkeys("‘’‚‛′`´ʼ", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
    # Letters NFKD does not decompose (their stroke is part of the letter).
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "Œ": "OE",
    "œ": "oe",
    "ı": "i",
    "•": "-",
    "·": ".",
    "×": "x",
    "÷": "/",
    "\t": " ",
    "\u00a0": " ",
    "\u2007": " ",
    "\u202f": " ",
}
# Invisible marks (combining accents, variation selectors, zero-width joiners) carry no letter
# of their own: dropping them keeps "é" typed as e + U+0301 readable and an emoji one "?".
_INVISIBLE_CATEGORIES = frozenset({"Mn", "Me", "Cf"})


def gsm7_length(text: str) -> int | None:
    """Septets ``text`` takes in GSM-7, or None when some character forces UCS-2."""
    length = 0
    for char in text:
        if char in GSM7_BASIC:
            length += 1
        elif char in GSM7_EXTENSION:
            length += 2
        else:
            return None
    return length


def is_gsm7(text: str) -> bool:
    """True when ``text`` can be sent in the GSM-7 alphabet (with the extension table)."""
    return gsm7_length(text) is not None


@dataclass(frozen=True, slots=True)
class Segments:
    """How a text is billed: its encoding, its length in that encoding's units, and its parts."""

    encoding: Encoding
    length: int  # septets for GSM-7, UTF-16 code units for UCS-2
    parts: int


def _pack(units: list[int], single: int, part: int) -> int:
    """Parts needed for characters of the given unit costs; a character is never split.

    Handsets keep an escape and its character (or a surrogate pair) in one part, so a part may
    end one unit short and the count can exceed ``ceil(length / part)``.
    """
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for cost in units:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts


def sms_segments(text: str) -> Segments:
    """The encoding and number of parts ``text`` is sent (and billed) as; empty text is one part."""
    septets = [2 if char in GSM7_EXTENSION else 1 for char in text]
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        return Segments("GSM-7", sum(septets), _pack(septets, GSM7_SINGLE, GSM7_PART))
    code_units = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return Segments("UCS-2", sum(code_units), _pack(code_units, UCS2_SINGLE, UCS2_PART))


def _transliterate(char: str) -> str:
    if char in GSM7_BASIC or char in GSM7_EXTENSION:
        return char
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
        return ""
    out = []
    # NFKD splits "ê" into "e" + a combining accent and folds compatibility forms ("ﬁ", "①",
    # full-width letters) to plain ones; whatever is still not GSM-7 becomes "?".
    for piece in unicodedata.normalize("NFKD", char):
        if piece in GSM7_BASIC or piece in GSM7_EXTENSION:
            out.append(piece)
        elif piece in _LOOKALIKES:
            out.append(_LOOKALIKES[piece])
        elif unicodedata.category(piece) not in _INVISIBLE_CATEGORIES:
            out.append("?")
    return "".join(out) or "?"


def to_gsm7(text: str) -> str:
    """``text`` with every character outside GSM-7 replaced by a look-alike, or "?".

    Characters already in GSM-7 are kept, accented ones included ("é", "ñ", "Ø" are in the
    default alphabet), so a name is changed only as far as it must be.
    """
    if is_gsm7(text):
        return text
    # NFC first, so "e" typed with a combining accent becomes the GSM-7 "é" rather than "e".
    return "".join(_transliterate(char) for char in unicodedata.normalize("NFC", text))
