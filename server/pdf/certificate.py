"""Certificate PDFs with fpdf2: pure Python, no system libraries, so edges can render too."""

from __future__ import annotations

from fpdf import FPDF

from lms_domain.assessments.ports import CertificateView
from lms_domain.i18n import Language
from server.pdf.text import MONTHS, latin1_text

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


FRAME_MARGIN_MM = 10
TEXT_PADDING_MM = 8


def format_date(view: CertificateView) -> str:
    at = view.issued_at_local
    return f"{at.day} {MONTHS[view.language][at.month - 1]} {at.year}"


class FpdfCertificateRenderer:
    def render(self, view: CertificateView) -> bytes:
        words = _TEXT[view.language]
        pdf = FPDF(orientation="landscape", format="A4")
        pdf.set_title(latin1_text(f"{words['heading']} - {view.course_title}"))
        pdf.set_author(latin1_text(view.institution_name))
        pdf.set_creator("Somo")
        pdf.set_auto_page_break(auto=False)
        pdf.add_page()
        pdf.set_line_width(1.5)
        pdf.rect(FRAME_MARGIN_MM, FRAME_MARGIN_MM, pdf.w - 2 * FRAME_MARGIN_MM, pdf.h - 2 * FRAME_MARGIN_MM)

        usable = pdf.w - 2 * (FRAME_MARGIN_MM + TEXT_PADDING_MM)

        def line(text: str, size: float, style: str = "", gap: float = 4) -> None:
            printable = latin1_text(text)
            pdf.set_font("Helvetica", style=style, size=size)
            # Shrink long titles and names to fit inside the frame rather than clip them.
            while size > 7 and pdf.get_string_width(printable) > usable:
                size -= 0.5
                pdf.set_font("Helvetica", style=style, size=size)
            if pdf.get_string_width(printable) > usable:
                pdf.set_x(FRAME_MARGIN_MM + TEXT_PADDING_MM)
                pdf.multi_cell(usable, size * 0.5, printable, align="C", new_x="LMARGIN", new_y="NEXT")
            else:
                pdf.cell(0, size * 0.5, printable, align="C", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(gap)

        pdf.set_y(30)
        line(words["heading"], 30, "B", 10)
        line(words["awarded"], 14)
        line(view.learner_name, 26, "B", 6)
        line(words["completed"], 14)
        line(view.course_title, 20, "B", 8)
        line(f"{words['score']}: {view.score_percent}%", 13)
        line(f"{words['issued']}: {format_date(view)}", 13)
        line(f"{words['by']}: {view.institution_name}", 13, gap=10)
        line(f"{words['code']}: {view.code}", 14, "B")
        line(f"{words['verify']} {view.verify_url}", 11)
        if view.revoked:
            pdf.set_text_color(200, 0, 0)
            line(words["revoked"], 40, "B")
        return bytes(pdf.output())
