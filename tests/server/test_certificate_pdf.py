"""Certificate PDFs: what is printed is what a person reads, so the tests read the PDF back."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.assessments.certificates import certificate_view, find_certificate
from lms_domain.assessments.ports import CertificateRenderer, CertificateView
from lms_domain.assessments.service import start_attempt, submit_attempt
from lms_domain.clock import FixedClock
from lms_domain.courses.service import enroll, record_progress
from lms_domain.i18n import Language
from server.pdf.certificate import FpdfCertificateRenderer
from tests.factories import make_course, make_institution, make_learner

NAIROBI = ZoneInfo("Africa/Nairobi")
LONG_TITLE = "Form 2 Mathematics: Algebra, Geometry and Statistics for the Kenya Certificate of Secondary Education"
FRAME_PT = 10 / 25.4 * 72  # the border is drawn 10 mm inside the page edge


def make_view(**changes: object) -> CertificateView:
    view = CertificateView(
        code="7K2QF-9XW0B",
        learner_name="Wanjirũ Ñjeri",
        course_title="Form 2 Mathematics",
        institution_name="Kĩambu Mixed Day Secondary",
        score_percent=83,
        issued_at_local=datetime(2026, 11, 27, 10, 0, tzinfo=NAIROBI),
        verify_url="https://somo.example/verify/7K2QF9XW0B",
        language=Language.EN,
        revoked=False,
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def page_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    return reader.pages[0].extract_text()


def text_runs(data: bytes) -> list[tuple[float, str]]:
    """Every piece of text with the x position (points) where it starts."""
    page = PdfReader(io.BytesIO(data)).pages[0]
    runs: list[tuple[float, str]] = []

    def visit(text: str, _cm: object, tm: list[float], _font: object, _size: object) -> None:
        if text.strip():
            runs.append((float(tm[4]), text))

    page.extract_text(visitor_text=visit)
    return runs


@pytest.fixture
def renderer() -> CertificateRenderer:
    return FpdfCertificateRenderer()  # through the port, as the app holds it


def test_english_certificate_prints_everything_a_verifier_needs(renderer: CertificateRenderer) -> None:
    data = renderer.render(make_view(course_title=LONG_TITLE))

    assert data.startswith(b"%PDF")
    text = page_text(data)
    assert "Certificate of Completion" in text
    assert "Wanjir" in text
    assert "jeri" in text  # accents may be folded for the core font, the letters stay
    assert LONG_TITLE in text
    assert "7K2QF-9XW0B" in text
    assert "https://somo.example/verify/7K2QF9XW0B" in text
    assert "83%" in text
    assert "27 November 2026" in text
    assert "REVOKED" not in text


def test_accented_names_are_folded_not_dropped(renderer: CertificateRenderer) -> None:
    text = page_text(renderer.render(make_view()))

    assert "Wanjiru Njeri" in text
    assert "Kiambu Mixed Day Secondary" in text


def test_swahili_certificate(renderer: CertificateRenderer) -> None:
    data = renderer.render(make_view(language=Language.SW, course_title="Hisabati Kidato cha Pili"))

    text = page_text(data)
    assert "Cheti cha Kuhitimu" in text
    assert "Hisabati Kidato cha Pili" in text
    assert "7K2QF-9XW0B" in text
    assert "Certificate of Completion" not in text


def test_a_revoked_certificate_says_so(renderer: CertificateRenderer) -> None:
    assert "REVOKED" in page_text(renderer.render(make_view(revoked=True)))
    assert "KIMEFUTWA" in page_text(renderer.render(make_view(revoked=True, language=Language.SW)))


def test_the_title_metadata_names_the_course(renderer: CertificateRenderer) -> None:
    reader = PdfReader(io.BytesIO(renderer.render(make_view())))

    assert reader.metadata is not None
    assert reader.metadata.title == "Certificate of Completion - Form 2 Mathematics"
    assert reader.metadata.author == "Kiambu Mixed Day Secondary"


def test_typographic_apostrophes_in_names_survive(renderer: CertificateRenderer) -> None:
    text = page_text(renderer.render(make_view(learner_name="Kamau Ng’ang’a")))

    assert "Ng'ang'a" in text or "Ng’ang’a" in text


def test_a_long_course_title_stays_inside_the_frame(renderer: CertificateRenderer) -> None:
    runs = text_runs(renderer.render(make_view(course_title=LONG_TITLE)))

    assert any(LONG_TITLE in text or text in LONG_TITLE for _, text in runs)
    assert all(x >= FRAME_PT for x, _ in runs), [(round(x), t) for x, t in runs if x < FRAME_PT]


def test_swahili_certificate_dates_use_swahili_month_names(renderer: CertificateRenderer) -> None:
    text = page_text(renderer.render(make_view(language=Language.SW)))

    assert "27 Novemba 2026" in text


def _as_typed(code: str) -> str:
    """How a person copies a code off paper: lower case, spaces and dashes, O for 0, l for 1."""
    typed = code.lower().replace("0", "o").replace("1", "l")
    return f"  {typed[:3]} {typed[3:6]}-{typed[6:]} "


async def test_a_completed_course_issues_a_certificate_that_renders_and_verifies(
    session: AsyncSession, clock: FixedClock, renderer: CertificateRenderer
) -> None:
    institution = await make_institution(session, name="Nyeri Hill School")
    learner = await make_learner(session, institution=institution, name="Wanjirũ Ñjeri", language=Language.SW)
    fixture = await make_course(session, institution=institution, lessons=3, questions=4, title=LONG_TITLE)
    await enroll(session=session, learner_id=learner.id, course_id=fixture.course.id, clock=clock)
    for lesson in fixture.lessons:
        await record_progress(session=session, learner_id=learner.id, lesson_id=lesson.id, percent=100, clock=clock)
    attempt = await start_attempt(session=session, learner_id=learner.id, quiz_id=fixture.quiz.id, clock=clock)
    result = await submit_attempt(
        session=session, learner_id=learner.id, attempt_id=attempt.id, clock=clock, answers=fixture.correct
    )
    await session.commit()

    assert result.attempt.passed is True
    assert result.attempt.score_percent == 100
    certificate = result.certificate
    assert certificate is not None
    view = await certificate_view(session=session, certificate=certificate, verify_base_url="https://somo.example/")
    assert view.language is Language.SW
    assert view.issued_at_local.utcoffset() == NAIROBI.utcoffset(view.issued_at_local)
    assert view.verify_url == f"https://somo.example/verify/{certificate.code}"

    text = page_text(renderer.render(view))

    assert "Cheti cha Kuhitimu" in text
    assert "Wanjiru Njeri" in text
    assert f"{LONG_TITLE} (sw)" in text  # the learner's language picks the title
    assert view.code in text
    assert view.verify_url in text
    assert "Nyeri Hill School" in text
    assert "100%" in text

    found = await find_certificate(session=session, code=_as_typed(certificate.code))
    assert found.id == certificate.id
