"""The console's words in Kiswahili, keyed by the English text the templates and pages use.

Each area of the console keeps its own catalogue module (``i18n/<area>.py`` with a ``SW``
dict), merged here; a test checks that every string the templates and pages show has its
Kiswahili, so a page cannot ship half-translated.
"""

from __future__ import annotations

from server.admin.i18n import common, content, money, operations, people, reconciliation

LANGUAGES = ("en", "sw")
# English words for the few keys that are codes rather than English text (roles).
EN: dict[str, str] = {
    "platform_admin": "platform admin",
    "institution_admin": "school admin",
    "instructor": "instructor",
    "learner": "learner",
}
SW: dict[str, str] = {}
for _catalogue in (common.SW, people.SW, content.SW, money.SW, operations.SW, reconciliation.SW):
    SW.update(_catalogue)


def translate(lang: str, text: str) -> str:
    """``text`` in ``lang``; English (the key itself) when there is no entry."""
    if lang == "sw":
        return SW.get(text, text)
    return EN.get(text, text)
