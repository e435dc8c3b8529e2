"""Certificate PDFs with fpdf2: pure Python, no system libraries, so edges can render too."""

from __future__ import annotations

import unicodedata

from fpdf import FPDF

from lms_domain.assessments.ports import CertificateView
from lms_domain.i18n import Language

_TEXT = {
    Language.EN: {
        "heading": "Certificate of Completion",
        "awarded": "This certifies that",
        "completed": "has completed the course",
        "score": "Final score",
        "issued": "Issued",
        "by": "Issued by",
        "verify": "Verify this certificate at",
        "code": "Verification code",
        "revoked": "REVOKED",
    },
    Language.SW: {
        "heading": "Cheti cha Kuhitimu",
        "awarded": "Hiki ni kuthibitisha kwamba",
        "completed": "amehitimu kozi ya",
        "score": "Alama ya mwisho",
        "issued": "Kimetolewa",
        "by": "Kimetolewa na",
        "verify": "Thibitisha cheti hiki kwenye",
        "code": "Nambari ya uthibitisho",
        "revoked": "KIMEFUTWA",
    },
}


def _latin1(text: str) -> str:
    """The PDF core fonts are Latin-1: fold accents, drop what cannot be printed."""
    folded = unicodedata.normalize("NFKD", text)
    return folded.encode("latin-1", "ignore").decode("latin-1")


class FpdfCertificateRenderer:
    def render(self, view: CertificateView) -> bytes:
        words = _TEXT[view.language]
        pdf = FPDF(orientation="landscape", format="A4")
        pdf.set_title(_latin1(f"{words['heading']} - {view.course_title}"))
        pdf.set_author(_latin1(view.institution_name))
        pdf.set_creator("Somo")
        pdf.set_auto_page_break(auto=False)
        pdf.add_page()
        pdf.set_line_width(1.5)
        pdf.rect(10, 10, pdf.w - 20, pdf.h - 20)

        def line(text: str, size: int, style: str = "", gap: float = 4) -> None:
            pdf.set_font("Helvetica", style=style, size=size)
            pdf.cell(0, size * 0.5, _latin1(text), align="C", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(gap)

        pdf.set_y(30)
        line(words["heading"], 30, "B", 10)
        line(words["awarded"], 14)
        line(view.learner_name, 26, "B", 6)
        line(words["completed"], 14)
        line(view.course_title, 20, "B", 8)
        line(f"{words['score']}: {view.score_percent}%", 13)
        line(f"{words['issued']}: {view.issued_at_local:%d %B %Y}", 13)
        line(f"{words['by']}: {view.institution_name}", 13, gap=10)
        line(f"{words['code']}: {view.code}", 14, "B")
        line(f"{words['verify']} {view.verify_url}", 11)
        if view.revoked:
            pdf.set_text_color(200, 0, 0)
            line(words["revoked"], 40, "B")
        return bytes(pdf.output())
