"""GSM 03.38: the alphabet, what a text costs in parts, the transliteration that keeps user
text in GSM-7, and the guard that every seeded SMS template is one GSM-7 part."""

from __future__ import annotations

import math
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms_domain.notifications.events import EVENTS, check_template
from lms_domain.notifications.gsm import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    Segments,
    gsm7_length,
    is_gsm7,
    sms_segments,
    to_gsm7,
)
from lms_domain.notifications.models import NotificationChannel
from server.seed import TEMPLATES

# ---- the alphabet ----


def test_the_tables_have_the_sizes_of_the_standard() -> None:
    # 128 code points, minus 0x1B (the escape itself, not a character); ten extension characters.
    assert len(GSM7_BASIC) == 127 and "\x1b" not in GSM7_BASIC
    assert set(GSM7_EXTENSION) == set("\f^{}\\[~]|€")
    assert not GSM7_BASIC & GSM7_EXTENSION


def test_ascii_letters_digits_and_swahili_are_gsm7() -> None:
    assert is_gsm7(string.ascii_letters + string.digits + " .,:;!?'\"()-+*#/@%&=<>_$")
    assert is_gsm7("Habari Wanjiku! Umehitimu Hisabati. Piga *384*123# kulipa kwa M-Pesa.")
    assert is_gsm7("Ébène Müller Ñandu Øystein Åsa Çelik")  # accents that are in the default alphabet


@pytest.mark.parametrize(("text", "length"), [("", 0), ("abc", 3), ("€", 2), ("a[b]c", 7), ("{}|~^\\", 12)])
def test_extension_characters_cost_two_septets(text: str, length: int) -> None:
    assert gsm7_length(text) == length


@pytest.mark.parametrize("text", ["’", "“hi”", "—", "…", "ê", "😀", "\t", "Ł", "\x1b", "`"])
def test_one_foreign_character_is_not_gsm7(text: str) -> None:
    assert gsm7_length(text) is None and not is_gsm7(text)


# ---- parts ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Segments("GSM-7", 0, 1)),
        ("a" * 160, Segments("GSM-7", 160, 1)),
        ("a" * 161, Segments("GSM-7", 161, 2)),
        ("a" * 306, Segments("GSM-7", 306, 2)),
        ("a" * 307, Segments("GSM-7", 307, 3)),
        ("€" * 80, Segments("GSM-7", 160, 1)),
        ("a" * 159 + "€", Segments("GSM-7", 161, 2)),
        ("é" * 70, Segments("GSM-7", 70, 1)),  # é is GSM-7: no switch
        ("ê" * 70, Segments("UCS-2", 70, 1)),
        ("ê" * 71, Segments("UCS-2", 71, 2)),
        ("ê" * 134, Segments("UCS-2", 134, 2)),
        ("ê" * 135, Segments("UCS-2", 135, 3)),
        ("😀" * 35, Segments("UCS-2", 70, 1)),  # an emoji is a surrogate pair: two code units
        ("😀" * 36, Segments("UCS-2", 72, 2)),
    ],
)
def test_single_and_multipart_boundaries(text: str, expected: Segments) -> None:
    assert sms_segments(text) == expected


def test_one_smart_quote_switches_a_whole_message_to_ucs2() -> None:
    plain = "Hi Wanjiku, your Somo subscription is due. Dial *384*123# to pay with M-Pesa. " * 2
    assert sms_segments(plain).encoding == "GSM-7" and sms_segments(plain).parts == 1
    quoted = plain.replace("Wanjiku", "Wanjiku’s", 1)
    assert sms_segments(quoted) == Segments("UCS-2", len(quoted), 3)


def test_an_escape_pair_is_never_split_across_parts() -> None:
    # 152 septets, then "€" (2): it cannot start in the first part's last slot.
    text = "a" * 152 + "€" + "a" * 152
    segments = sms_segments(text)
    assert segments.length == 306 and segments.parts == 3


def test_a_surrogate_pair_is_never_split_across_parts() -> None:
    text = "ê" * 66 + "😀" + "ê" * 66
    segments = sms_segments(text)
    assert segments.length == 134 and segments.parts == 3


@given(st.text(alphabet=sorted(GSM7_BASIC), min_size=0, max_size=800))
def test_single_septet_gsm7_parts_follow_the_textbook_formula(text: str) -> None:
    expected = 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    assert sms_segments(text) == Segments("GSM-7", len(text), expected)


@given(st.text(min_size=0, max_size=500))
def test_parts_are_enough_for_the_length(text: str) -> None:
    segments = sms_segments(text)
    single, part = (160, 153) if segments.encoding == "GSM-7" else (70, 67)
    assert segments.parts >= 1
    assert segments.length <= single or segments.length <= segments.parts * part
    assert (segments.encoding == "GSM-7") == is_gsm7(text)


# ---- transliteration ----


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ng’ang’a", "Ng'ang'a"),
        ("“Karibu”", '"Karibu"'),
        ("2–3 — done…", "2-3 - done..."),
        ("Zoë", "Zoe"),
        ("Łukasz Çelik ç", "Lukasz Çelik c"),
        ("José", "José"),  # already GSM-7: kept, not stripped
        ("Jose\u0301", "José"),  # a combining accent is composed first
        ("ﬁle ① Ａｂ", "file 1 Ab"),
        ("Amina 😀", "Amina ?"),
        ("❤️", "?"),  # the variation selector is dropped, not a second "?"
        ("a\u200bb", "ab"),  # zero-width space
        ("名前", "??"),
        ("tab\there", "tab here"),
        ("€5 [x]", "€5 [x]"),
    ],
)
def test_to_gsm7_maps_lookalikes_and_strips_accents(text: str, expected: str) -> None:
    assert to_gsm7(text) == expected


@given(st.text())
def test_to_gsm7_always_returns_gsm7(text: str) -> None:
    assert is_gsm7(to_gsm7(text))


@given(st.text())
def test_to_gsm7_is_idempotent(text: str) -> None:
    once = to_gsm7(text)
    assert to_gsm7(once) == once


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION)))
def test_to_gsm7_leaves_gsm7_text_alone(text: str) -> None:
    assert to_gsm7(text) == text


# ---- the seeded templates ----

# Realistic long values: what a text must still fit in one part with.
LONG_VALUES = {
    "learner_name": "Achieng Otieno Omolo",  # 20
    "amount": "3,000",
    "due_date": "27/12/2026",
    "access_until": "10/01/2027",
    "ussd_code": "*384*123#",
    "shortcode": "20880",
    "receipt": "SKR4H7T2QX",  # 10, an M-Pesa receipt
    "course_title": "Form 2 Mathematics: Algebra and Geometry",  # 40
    "code": "ABCD-EFGH-JKLM",
    "attempt": "4",
    "attempts_total": "4",
    "plan_name": "Somo Free",
    "week": "52",
    "summary": "Achieng: Form 2 Mathematics 100% (last quiz 100%); Baraka: Form 2 Mathematics 50%",
}
# The digest carries a summary of every profile on a phone: up to three parts.
PARTS_ALLOWED = {"progress_digest": 3}
SMS_TEXTS = [
    pytest.param(spec.name, language.value, body, id=f"builtin-{spec.name}-{language.value}")
    for spec in EVENTS.values()
    if NotificationChannel.SMS in spec.channels
    for language, body in spec.body.items()
] + [
    pytest.param(event, language, body, id=f"seeded-{event}-{language}")
    for event, (body_en, body_sw) in TEMPLATES.items()
    for language, body in (("en", body_en), ("sw", body_sw))
]


def test_the_long_values_are_as_long_as_promised() -> None:
    assert len(LONG_VALUES["learner_name"]) == 20
    assert len(LONG_VALUES["course_title"]) == 40
    assert len(LONG_VALUES["receipt"]) == 10


@pytest.mark.parametrize(("event", "language", "body"), SMS_TEXTS)
def test_every_sms_text_is_gsm7_and_fits_its_parts(event: str, language: str, body: str) -> None:
    placeholders = check_template(EVENTS[event], body)  # only variables the event supplies
    assert is_gsm7(body), f"{event}/{language} has a character outside GSM-7"
    text = body.format(**{name: LONG_VALUES[name] for name in placeholders})
    segments = sms_segments(text)
    assert segments.encoding == "GSM-7"
    assert segments.parts <= PARTS_ALLOWED.get(event, 1), f"{event}/{language}: {segments} for {text!r}"
