"""Every string the console shows has its Kiswahili."""

from __future__ import annotations

import re
from pathlib import Path

from lms_domain.tenancy.models import Role
from server.admin.i18n import SW
from server.admin.menu import MENU

ADMIN = Path(__file__).resolve().parents[2] / "server" / "admin"
# _("...") in templates, page._("...") and translate(lang, "...") in Python; plain literals only.
_CALL = re.compile(r"""(?:\b_|\btranslate\(\w+,)\(?\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)""")


def _strings() -> set[str]:
    found: set[str] = set()
    for path in [*ADMIN.rglob("*.html"), *ADMIN.rglob("*.py")]:
        if "i18n" in path.parts:
            continue
        text = path.read_text()
        for double, single in _CALL.findall(text):
            found.add(double or single)
        if path.suffix == ".html":  # labels and options handed to the filters macro
            found.update(re.findall(r'"label": "([^"]+)"', text))
            found.update(label for _, label in re.findall(r'\("([\w.-]+)", "([^"]+)"\)', text))
    return found


def test_every_console_string_has_kiswahili() -> None:
    strings = _strings() | {item.label for item in MENU} | {role.value for role in Role}
    assert len(strings) > 40  # the scan finds the strings at all
    missing = sorted(s for s in strings if s and s not in SW)
    assert not missing, f"no Kiswahili for: {missing}"


def test_translations_keep_their_placeholders() -> None:
    for english, swahili in SW.items():
        assert set(re.findall(r"{\w*}", english)) == set(re.findall(r"{\w*}", swahili)), english
