"""Text helpers shared by the PDF renderers (fpdf2 core fonts are Latin-1 only)."""

from __future__ import annotations

import unicodedata

from lms_domain.i18n import Language

MONTHS = {
    Language.EN: (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
    Language.SW: (
        "Januari",
        "Februari",
        "Machi",
        "Aprili",
        "Mei",
        "Juni",
        "Julai",
        "Agosti",
        "Septemba",
        "Oktoba",
        "Novemba",
        "Desemba",
    ),
}
# Kenyan names often carry a typographic apostrophe (Ng'ang'a); keep it as ASCII.
_ASCII_PUNCTUATION = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u02bc": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
    }
)


def latin1_text(text: str) -> str:
    """The PDF core fonts are Latin-1: keep punctuation as ASCII, fold accents, drop the rest.

    Core fonts keep the renderer free of font files, so it works unchanged on an edge node.
    """
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_PUNCTUATION))
    return "".join(ch for ch in folded if not unicodedata.combining(ch)).encode("latin-1", "ignore").decode("latin-1")
