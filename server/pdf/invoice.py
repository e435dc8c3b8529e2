"""Invoice and receipt PDFs with fpdf2, in English or Kiswahili.

Core fonts only (Latin-1, no font files), like the certificate renderer, so an edge node
can print the same documents offline. Every amount is printed with its currency and two
decimals, because the VAT split is in cents even when the total is whole shillings.
"""

from __future__ import annotations

from datetime import datetime

from fpdf import FPDF

from lms_domain.commerce.ports import InvoiceView, ReceiptView
from lms_domain.i18n import Language
from lms_domain.money import MINOR_PER_MAJOR
from server.pdf.text import MONTHS, latin1_text

_TEXT = {
    Language.EN: {
        "invoice": "Invoice",
        "receipt": "Receipt",
        "invoice_no": "Invoice number",
        "receipt_no": "Receipt number",
        "date": "Date",
        "billed_to": "Billed to",
        "received_from": "Received from",
        "account": "Account number",
        "description": "Description",
        "quantity": "Qty",
        "unit": "Unit price",
        "amount": "Amount",
        "subtotal": "Subtotal",
        "discount": "Discount",
        "total": "Total (VAT inclusive)",
        "vat": "VAT",
        "net": "Amount before VAT",
        "paid_amount": "Amount received",
        "paid_via": "Paid with",
        "transaction": "Transaction code",
        "paid_at": "Paid on",
        "prices_include_vat": "All prices include VAT.",
        "thanks": "Thank you for learning with us.",
        "open": "DUE",
        "paid": "PAID",
        "void": "VOID",
    },
    Language.SW: {
        "invoice": "Ankara",
        "receipt": "Risiti",
        "invoice_no": "Nambari ya ankara",
        "receipt_no": "Nambari ya risiti",
        "date": "Tarehe",
        "billed_to": "Kwa",
        "received_from": "Imepokelewa kutoka kwa",
        "account": "Nambari ya akaunti",
        "description": "Maelezo",
        "quantity": "Idadi",
        "unit": "Bei ya kimoja",
        "amount": "Kiasi",
        "subtotal": "Jumla ndogo",
        "discount": "Punguzo",
        "total": "Jumla (pamoja na VAT)",
        "vat": "VAT",
        "net": "Kiasi kabla ya VAT",
        "paid_amount": "Kiasi kilichopokelewa",
        "paid_via": "Imelipwa kupitia",
        "transaction": "Nambari ya muamala",
        "paid_at": "Imelipwa tarehe",
        "prices_include_vat": "Bei zote zinajumuisha VAT.",
        "thanks": "Asante kwa kujifunza nasi.",
        "open": "INADAIWA",
        "paid": "IMELIPWA",
        "void": "IMEBATILISHWA",
    },
}
PROVIDER_NAMES = {"mpesa": "M-Pesa", "airtel": "Airtel Money", "manual": "Cash / bank"}
MARGIN_MM = 15
# Description, quantity, unit price, amount: together the 180 mm between the margins.
COLUMNS_MM = (88.0, 16.0, 38.0, 38.0)
ROW_MM = 7.0


def _printable(text: str) -> str:
    """Latin-1 text with the gaps left by dropped characters (emoji) closed up."""
    return " ".join(latin1_text(text).split())


def money(amount_minor: int, currency: str) -> str:
    per = MINOR_PER_MAJOR.get(currency, 100)
    whole, rest = divmod(amount_minor, per)
    decimals = len(str(per)) - 1
    return f"{currency} {whole:,}" + (f".{rest:0{decimals}d}" if decimals else "")


def vat_rate(rate_bp: int) -> str:
    return f"{rate_bp / 100:g}%"


def format_date(at: datetime, language: Language) -> str:
    return f"{at.day} {MONTHS[language][at.month - 1]} {at.year}, {at:%H:%M}"


class _Document:
    """One A4 page with a heading, key/value facts, and right-aligned amounts."""

    def __init__(self, title: str, author: str) -> None:
        self.pdf = FPDF(orientation="portrait", format="A4")
        self.pdf.set_title(_printable(title))
        self.pdf.set_author(_printable(author))
        self.pdf.set_creator("Somo")
        self.pdf.set_margins(MARGIN_MM, MARGIN_MM, MARGIN_MM)
        self.pdf.set_auto_page_break(auto=True, margin=MARGIN_MM)
        self.pdf.add_page()

    @property
    def width(self) -> float:
        return float(self.pdf.w - 2 * MARGIN_MM)

    def fit(self, text: str, width: float) -> str:
        """Shorten text to fit a column rather than let it spill over the next one."""
        printable = _printable(text)
        if self.pdf.get_string_width(printable) <= width - 2:
            return printable
        while printable and self.pdf.get_string_width(printable + "...") > width - 2:
            printable = printable[:-1]
        return printable.rstrip() + "..."

    def heading(self, institution: str, title: str) -> None:
        self.pdf.set_font("Helvetica", style="B", size=16)
        self.pdf.multi_cell(self.width, 8, _printable(institution), new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_font("Helvetica", style="B", size=22)
        self.pdf.cell(0, 12, _printable(title.upper()), new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(2)

    def fact(self, label: str, value: str) -> None:
        self.pdf.set_font("Helvetica", style="B", size=10)
        self.pdf.cell(55, 6, self.fit(label, 55))
        self.pdf.set_font("Helvetica", size=10)
        self.pdf.cell(self.width - 55, 6, self.fit(value, self.width - 55), new_x="LMARGIN", new_y="NEXT")

    def row(self, cells: tuple[str, str, str, str], *, bold: bool = False, border: str = "") -> None:
        self.pdf.set_font("Helvetica", style="B" if bold else "", size=10)
        for index, (text, width) in enumerate(zip(cells, COLUMNS_MM, strict=True)):
            last = index == len(COLUMNS_MM) - 1
            self.pdf.cell(
                width,
                ROW_MM,
                self.fit(text, width),
                border=border,
                align="L" if index == 0 else "R",
                new_x="LMARGIN" if last else "RIGHT",
                new_y="NEXT" if last else "TOP",
            )

    def total(self, label: str, value: str, *, bold: bool = False) -> None:
        label_width = sum(COLUMNS_MM[:3])
        self.pdf.set_font("Helvetica", style="B" if bold else "", size=11 if bold else 10)
        self.pdf.cell(label_width, ROW_MM, self.fit(label, label_width), align="R")
        self.pdf.cell(COLUMNS_MM[3], ROW_MM, self.fit(value, COLUMNS_MM[3]), align="R", new_x="LMARGIN", new_y="NEXT")

    def stamp(self, text: str, red: bool) -> None:
        self.pdf.ln(6)
        if red:
            self.pdf.set_text_color(200, 0, 0)
        else:
            self.pdf.set_text_color(0, 128, 0)
        self.pdf.set_font("Helvetica", style="B", size=28)
        self.pdf.cell(0, 14, _printable(text), align="C", new_x="LMARGIN", new_y="NEXT")
        self.pdf.set_text_color(0, 0, 0)

    def note(self, text: str) -> None:
        self.pdf.set_font("Helvetica", style="I", size=9)
        self.pdf.multi_cell(self.width, 5, _printable(text), new_x="LMARGIN", new_y="NEXT")

    def output(self) -> bytes:
        return bytes(self.pdf.output())


class FpdfInvoiceRenderer:
    """Stateless: one instance serves every request."""

    def render_invoice(self, view: InvoiceView) -> bytes:
        words = _TEXT[view.language]
        doc = _Document(f"{words['invoice']} {view.number}", view.institution_name)
        doc.heading(view.institution_name, words["invoice"])
        doc.fact(words["invoice_no"], view.number)
        doc.fact(words["date"], format_date(view.issued_at_local, view.language))
        doc.fact(words["billed_to"], view.learner_name)
        doc.fact(words["account"], view.account_no)
        doc.pdf.ln(6)
        doc.row((words["description"], words["quantity"], words["unit"], words["amount"]), bold=True, border="B")
        for line in view.lines:
            doc.row(
                (
                    line.description,
                    str(line.quantity),
                    money(line.unit_amount_minor, view.currency),
                    money(line.total_minor, view.currency),
                )
            )
        doc.pdf.ln(2)
        doc.total(words["subtotal"], money(view.subtotal_minor, view.currency))
        if view.discount_minor:
            doc.total(words["discount"], "-" + money(view.discount_minor, view.currency))
        doc.total(words["total"], money(view.total_minor, view.currency), bold=True)
        doc.total(f"{words['vat']} ({vat_rate(view.vat_rate_bp)})", money(view.vat_minor, view.currency))
        doc.total(words["net"], money(view.net_minor, view.currency))
        doc.pdf.ln(4)
        doc.note(words["prices_include_vat"])
        if view.status in ("paid", "void"):
            doc.stamp(words[view.status], red=view.status == "void")
        return doc.output()

    def render_receipt(self, view: ReceiptView) -> bytes:
        words = _TEXT[view.language]
        doc = _Document(f"{words['receipt']} {view.number}", view.institution_name)
        doc.heading(view.institution_name, words["receipt"])
        doc.fact(words["receipt_no"], view.number)
        doc.fact(words["invoice_no"], view.invoice_number)
        doc.fact(words["date"], format_date(view.issued_at_local, view.language))
        doc.fact(words["received_from"], view.learner_name)
        doc.fact(words["account"], view.account_no)
        doc.fact(words["paid_via"], PROVIDER_NAMES.get(view.provider, view.provider))
        doc.fact(words["transaction"], view.provider_receipt)
        doc.fact(words["paid_at"], format_date(view.paid_at_local, view.language))
        doc.pdf.ln(6)
        doc.total(words["paid_amount"], money(view.amount_minor, view.currency), bold=True)
        doc.total(f"{words['vat']} ({vat_rate(view.vat_rate_bp)})", money(view.vat_minor, view.currency))
        doc.total(words["net"], money(view.net_minor, view.currency))
        doc.stamp(words["paid"], red=False)
        doc.pdf.ln(4)
        doc.note(words["thanks"])
        return doc.output()
