"""The catalogue exists in both languages, stays in GSM-7 and fits its screen; paging keeps
the footer and never exceeds the budget, whatever the content."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from lms_domain.i18n import Language
from lms_domain.notifications.gsm import gsm7_length, is_gsm7, sms_segments
from ussd.layout import BODY_BUDGET, clean, paginate
from ussd.texts import MESSAGES, text

# The longest values a variable takes on a screen (names and titles are cut to fit before
# they are placed; these are the figures the screens use or the domain allows).
LONG = {
    "name": "N" * 60,
    "tries": 2,
    "time": "23:59",
    "number": 12,
    "total": 12,
    "school": "S" * 40,
    "course": "C" * 40,
    "score": 100,
    "max": 100,
    "percent": 100,
    "pass_mark": 100,
    "quiz": "Q" * 40,
    "code": "ABCDE-FGHJK",
    "prompt": "P" * 40,
    "scores": "100%,100%,100%",
    "product": "P" * 40,
    "status": "Payment due (grace)",
    "until": "27/12/2026",
    "amount": "250,000",
    "interval": "month",
    "phone": "0700000001",
    "provider": "Airtel Money",
    "shortcode": "20880",
    "options": "RENEW 1 - Baraka Otieno, RENEW 2 - Zawadi Otieno",
    "command": "RENEW",
}
SMS_MAX = 306  # two GSM-7 parts, the most an SMS reply may take


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_key_exists_in_english_and_kiswahili_with_the_same_variables() -> None:
    for key, (en, sw) in MESSAGES.items():
        assert en.strip() and sw.strip(), key
        assert _fields(en) == _fields(sw), key


def test_every_text_is_gsm7_and_fits_with_its_longest_values() -> None:
    for key in MESSAGES:
        for language in Language:
            filled = text(language, key, **{k: v for k, v in LONG.items() if k in _fields(MESSAGES[key][0])})
            assert is_gsm7(filled) and gsm7_length(filled) == len(filled), (key, language, filled)
            if key.startswith("sms."):
                assert len(filled) <= SMS_MAX, (key, language, len(filled))
            else:
                # help.text ends a session alone; everything else shares a screen with a footer.
                assert len(filled) <= BODY_BUDGET, (key, language, len(filled))


def test_sms_replies_stay_in_one_segment_where_their_values_allow() -> None:
    short = {**LONG, "name": "Amina Wanjiru", "options": "RENEW 1 - Baraka, RENEW 2 - Zawadi"}
    for key in (k for k in MESSAGES if k.startswith("sms.")):
        for language in Language:
            filled = text(language, key, **{k: v for k, v in short.items() if k in _fields(MESSAGES[key][0])})
            segments = sms_segments(filled)
            assert segments.encoding == "GSM-7" and segments.parts == 1, (key, language, filled)


def test_clean_keeps_screens_in_gsm7() -> None:
    assert clean("Zoë  “Njeri”\n Müller–Wambuî") == 'Zoe "Njeri" Müller-Wambui'  # ü is GSM-7


words = st.text(alphabet=string.ascii_letters + string.digits + " .,?!-", min_size=0, max_size=400)


@given(
    header=words,
    items=st.lists(words, max_size=12),
    nav=st.lists(st.sampled_from(["0 Back", "00 Home", "0 Rudi", "00 Mwanzo"]), max_size=2, unique=True),
    notice=st.sampled_from(["", "Invalid choice.", "Wrong PIN. 2 tries left."]),
    page=st.integers(min_value=0, max_value=30),
)
def test_every_page_fits_and_ends_with_its_footer(
    header: str, items: list[str], nav: list[str], notice: str, page: int
) -> None:
    numbered = [f"{i}. {item}" for i, item in enumerate(items, start=1)]
    shown = paginate(header=header, items=numbered, nav=nav, more_label="98 More", page=page, notice=notice)
    assert len(shown.body) <= BODY_BUDGET
    footer = " ".join(["98 More", *nav] if shown.has_more else nav)
    if footer:
        assert shown.body.endswith(footer)
    # Walking the pages with 98 shows every item exactly once, in order.
    seen: list[str] = []
    number = 0
    while True:
        current = paginate(header=header, items=numbered, nav=nav, more_label="98 More", page=number, notice=notice)
        seen += [line for line in current.body.split("\n") if any(line.startswith(f"{i}. ") for i in range(1, 13))]
        if not current.has_more:
            break
        number += 1
    assert [line.split(".", 1)[0] for line in seen] == [str(i) for i in range(1, len(items) + 1)]


@given(st.text(max_size=300))
def test_cleaned_text_costs_one_septet_per_character(value: str) -> None:
    cleaned = clean(value)
    assert gsm7_length(cleaned) == len(cleaned)
