"""Fitting screens into 160 characters: clean text, truncate, and page with the footer kept.

The budget counts the ``CON ``/``END `` prefix, as most stacks do, so a body has 156
characters; the GSM-7 hard cap of 182 is never approached. Paging reserves the navigation
footer first and fills the rest, because a naive cut at the limit is how other engines
ended up showing ``0. Back 00.``.
"""

from __future__ import annotations

from dataclasses import dataclass

from lms_domain.notifications.gsm import to_gsm7

SCREEN_BUDGET = 160
HARD_CAP = 182
PREFIX = 4  # "CON " or "END "
BODY_BUDGET = SCREEN_BUDGET - PREFIX
ELLIPSIS = ".."


# GSM-7's extension characters cost two septets each; on a screen they become one-septet
# look-alikes, so a screen's length in characters is its length on the air.
_ONE_SEPTET = str.maketrans(
    {"[": "(", "]": ")", "{": "(", "}": ")", "|": "/", "\\": "/", "~": "-", "^": "'", "€": "EUR"}
)


def clean(value: str) -> str:
    """User- or author-supplied text made safe for a screen: the GSM-7 basic set only (one
    character outside it would halve the screen) and no stray whitespace or line breaks."""
    return " ".join(to_gsm7(value).translate(_ONE_SEPTET).split())


def truncate(value: str, limit: int) -> str:
    if len(value) <= limit:
        return value
    return value[: max(limit - len(ELLIPSIS), 0)].rstrip() + ELLIPSIS


def _chunks(value: str, limit: int) -> list[str]:
    """``value`` split at spaces (or hard, for a long word) into pieces of at most ``limit``."""
    pieces: list[str] = []
    for line in value.split("\n"):
        current = ""
        for word in line.split(" "):
            while len(word) > limit:
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(word[:limit])
                word = word[limit:]
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= limit:
                current = candidate
            else:
                pieces.append(current)
                current = word
        pieces.append(current)
    return [p for p in pieces if p] or [""]


@dataclass(frozen=True, slots=True)
class Page:
    body: str
    number: int  # the page shown, clamped to the last
    has_more: bool


def paginate(
    *,
    header: str,
    items: list[str],
    nav: list[str],
    more_label: str,
    page: int,
    notice: str = "",
    budget: int = BODY_BUDGET,
) -> Page:
    """Lay out ``notice``, ``header`` and numbered ``items`` over pages that each end with the
    footer (``nav``, plus ``more_label`` where another page follows), every page within
    ``budget``. A header too long for one page is continued on the next, before the items."""
    footer_max = " ".join([more_label, *nav])
    reserved = len(footer_max) + 1 if footer_max else 0
    lead = [truncate(notice, budget // 2)] if notice else []
    room = budget - reserved - sum(len(x) + 1 for x in lead)
    blocks = [*(_chunks(header, room) if header else []), *(truncate(item, room) for item in items)]
    pages: list[list[str]] = [[]]
    used = 0
    for block in blocks:
        cost = len(block) + (1 if pages[-1] else 0)
        if pages[-1] and used + cost > room:
            pages.append([])
            used = 0
            cost = len(block)
        pages[-1].append(block)
        used += cost
    number = min(max(page, 0), len(pages) - 1)
    has_more = number < len(pages) - 1
    footer = " ".join([more_label, *nav] if has_more else nav)
    lines = [*lead, *pages[number], *([footer] if footer else [])]
    return Page(body="\n".join(lines), number=number, has_more=has_more)


def fit(value: str, budget: int = BODY_BUDGET) -> str:
    """A closing (END) text: nothing can follow it, so it is cut to fit rather than paged."""
    return truncate(value, budget)
