"""English and Kiswahili: every learner-facing text exists in both."""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    EN = "en"
    SW = "sw"


def pick(language: Language, en: str, sw: str | None) -> str:
    """The text in ``language``, falling back to English where Swahili is missing."""
    if language is Language.SW and sw:
        return sw
    return en
