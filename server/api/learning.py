"""Enrollments, lesson progress, quiz attempts and certificates; and the public page that
verifies a printed certificate."""

from __future__ import annotations

import asyncio
import html
from typing import Any

from aiohttp import web

from lms_domain.assessments.ports import CertificateView
from lms_domain.errors import NotFound
from lms_domain.i18n import Language
from lms_domain.learning import service
from lms_domain.learning.schemas import (
    AnswerOut,
    AnswerUpdate,
    AttemptListQuery,
    AttemptOut,
    AttemptPage,
    AttemptResultOut,
    AttemptStart,
    AttemptSubmit,
    AttemptSummary,
    CertificateListQuery,
    CertificateOut,
    CertificatePage,
    CertificateVerification,
    CourseProgressOut,
    EnrollmentCreate,
    EnrollmentListQuery,
    EnrollmentOut,
    EnrollmentPage,
    LearnerQuery,
    LessonProgressOut,
    ProgressUpdate,
)
from lms_domain.tenancy.models import Role
from server.api.registry import PUBLIC, Api, Call
from server.keys import certificate_renderer_key, settings_key
from server.pdf.text import MONTHS

api = Api("learning", description="Enrollments, lesson progress, quiz attempts and certificates.")
public_api = Api(
    "verify",
    description="Public pages outside /api/v1: anyone holding a certificate code may check it.",
    prefix="",
)

# Platform admins may read everything; acting for a learner is for the school and the learner.
ACTING = frozenset({Role.INSTITUTION_ADMIN, Role.INSTRUCTOR, Role.LEARNER})
PDF_TYPE = "application/pdf"
HTML_TYPE = "text/html"


def _verify_base_url(call: Call[Any, Any]) -> str:
    return call.app[settings_key].http.public_url


def _certificate_out(call: Call[Any, Any], certificate: Any) -> CertificateOut:
    return CertificateOut.of(certificate, verify_base_url=_verify_base_url(call))


# --- enrollments --------------------------------------------------------------------------


@api.post(
    "/enrollments",
    summary="Enroll in a course",
    body=EnrollmentCreate,
    response=EnrollmentOut,
    status=201,
    auth=ACTING,
    idempotent=True,
)
async def create_enrollment(call: Call[EnrollmentCreate, Any]) -> EnrollmentOut:
    """Enrolling again is harmless: the existing enrollment comes back. Refused with 409
    `prerequisites_missing` or `entitlement_required` when the learner may not start yet."""
    async with call.uow() as session:
        enrollment = await service.enroll(
            session=session,
            actor=call.actor,
            course_id=call.body.course_id,
            learner_id=call.body.learner_id,
            clock=call.clock,
        )
        return EnrollmentOut.model_validate(enrollment)


@api.get("/enrollments", summary="List enrollments", query=EnrollmentListQuery, response=EnrollmentPage)
async def list_enrollments(call: Call[Any, EnrollmentListQuery]) -> EnrollmentPage:
    """Learners see their own; staff their institution's."""
    async with call.read() as session:
        rows, cursor = await service.list_enrollments(session=session, actor=call.actor, query=call.query)
        return EnrollmentPage(items=[EnrollmentOut.model_validate(r) for r in rows], next_cursor=cursor)


@api.get("/enrollments/{enrollment_id}", summary="Get an enrollment", response=EnrollmentOut)
async def get_enrollment(call: Call[Any, Any]) -> EnrollmentOut:
    async with call.read() as session:
        enrollment = await service.get_enrollment(
            session=session, actor=call.actor, enrollment_id=call.path_uuid("enrollment_id")
        )
        return EnrollmentOut.model_validate(enrollment)


@api.delete("/enrollments/{enrollment_id}", summary="Withdraw from a course", response=EnrollmentOut, auth=ACTING)
async def withdraw_enrollment(call: Call[Any, Any]) -> EnrollmentOut:
    """The enrollment stays, marked `withdrawn`, with the learner's progress; enrolling again
    resumes it. A completed course cannot be withdrawn from (409 `enrollment_completed`)."""
    async with call.uow() as session:
        enrollment = await service.withdraw(
            session=session, actor=call.actor, enrollment_id=call.path_uuid("enrollment_id")
        )
        return EnrollmentOut.model_validate(enrollment)


# --- lesson progress ----------------------------------------------------------------------


@api.put(
    "/lessons/{lesson_id}/progress",
    summary="Record lesson progress",
    body=ProgressUpdate,
    response=LessonProgressOut,
    auth=ACTING,
)
async def record_progress(call: Call[ProgressUpdate, Any]) -> LessonProgressOut:
    """Monotonic: a lower percent or a replayed report changes nothing, so devices may resend
    freely. Completing the last lesson may complete the course and issue the certificate."""
    async with call.uow() as session:
        progress = await service.record_progress(
            session=session, actor=call.actor, lesson_id=call.path_uuid("lesson_id"), data=call.body, clock=call.clock
        )
        return LessonProgressOut.model_validate(progress)


@api.get(
    "/courses/{course_id}/progress",
    summary="A learner's progress in a course",
    query=LearnerQuery,
    response=CourseProgressOut,
)
async def get_course_progress(call: Call[Any, LearnerQuery]) -> CourseProgressOut:
    async with call.read() as session:
        return await service.course_progress(
            session=session, actor=call.actor, course_id=call.path_uuid("course_id"), learner_id=call.query.learner_id
        )


# --- attempts -----------------------------------------------------------------------------


@api.post(
    "/quizzes/{quiz_id}/attempts",
    summary="Start or resume a quiz attempt",
    body=AttemptStart,
    response=AttemptOut,
    status=201,
    auth=ACTING,
)
async def start_attempt(call: Call[AttemptStart, Any]) -> AttemptOut:
    """Returns the open attempt if there is one. Questions come without their answers.
    409 `max_attempts_reached` when the quiz allows no more; 403 `enrollment_required` for
    a paid course the learner is not enrolled in."""
    async with call.uow() as session:
        return await service.start_attempt(
            session=session,
            actor=call.actor,
            quiz_id=call.path_uuid("quiz_id"),
            data=call.body,
            clock=call.clock,
            verify_base_url=_verify_base_url(call),
        )


@api.put(
    "/attempts/{attempt_id}/answers/{question_id}",
    summary="Answer a question",
    body=AnswerUpdate,
    response=AnswerOut,
    auth=ACTING,
)
async def answer_question(call: Call[AnswerUpdate, Any]) -> AnswerOut:
    """Answering again replaces the choice, until the attempt is submitted."""
    async with call.uow() as session:
        return await service.answer_question(
            session=session,
            actor=call.actor,
            attempt_id=call.path_uuid("attempt_id"),
            question_id=call.path_uuid("question_id"),
            choice_id=call.body.choice_id,
            clock=call.clock,
        )


@api.post(
    "/attempts/{attempt_id}/submit",
    summary="Submit an attempt for grading",
    body=AttemptSubmit,
    response=AttemptResultOut,
    auth=ACTING,
)
async def submit_attempt(call: Call[AttemptSubmit, Any]) -> AttemptResultOut:
    """Submitting again returns the stored result unchanged. The result shows the correct
    choices once the learner passed the quiz or has no attempt left (`answers_revealed`),
    and the certificate when this attempt completed the course. 409 `max_attempts_reached`
    when the quiz allows no more submitted attempts."""
    async with call.uow() as session:
        return await service.submit_attempt(
            session=session,
            actor=call.actor,
            attempt_id=call.path_uuid("attempt_id"),
            answers=call.body.answers,
            clock=call.clock,
            verify_base_url=_verify_base_url(call),
        )


@api.get("/attempts/{attempt_id}", summary="Get an attempt", response=AttemptOut)
async def get_attempt(call: Call[Any, Any]) -> AttemptOut:
    """`result` stays null until the attempt is submitted; correct answers are shown only
    once revealed (`result.answers_revealed`)."""
    async with call.read() as session:
        return await service.get_attempt(
            session=session,
            actor=call.actor,
            attempt_id=call.path_uuid("attempt_id"),
            verify_base_url=_verify_base_url(call),
        )


@api.get("/attempts", summary="List attempts", query=AttemptListQuery, response=AttemptPage)
async def list_attempts(call: Call[Any, AttemptListQuery]) -> AttemptPage:
    """Learners see their own; staff their institution's."""
    async with call.read() as session:
        rows, cursor = await service.list_attempts(session=session, actor=call.actor, query=call.query)
        return AttemptPage(items=[AttemptSummary.model_validate(r) for r in rows], next_cursor=cursor)


# --- certificates -------------------------------------------------------------------------


@api.get("/certificates", summary="List certificates", query=CertificateListQuery, response=CertificatePage)
async def list_certificates(call: Call[Any, CertificateListQuery]) -> CertificatePage:
    """Learners see their own; staff their institution's. Revoked ones are listed too."""
    async with call.read() as session:
        rows, cursor = await service.list_certificates(session=session, actor=call.actor, query=call.query)
        return CertificatePage(items=[_certificate_out(call, r) for r in rows], next_cursor=cursor)


@api.get("/certificates/{certificate_id}", summary="Get a certificate", response=CertificateOut)
async def get_certificate(call: Call[Any, Any]) -> CertificateOut:
    async with call.read() as session:
        certificate = await service.get_certificate(
            session=session, actor=call.actor, certificate_id=call.path_uuid("certificate_id")
        )
        return _certificate_out(call, certificate)


@api.get("/certificates/{certificate_id}/pdf", summary="Download a certificate as PDF", content_type=PDF_TYPE)
async def download_certificate(call: Call[Any, Any]) -> web.StreamResponse:
    """Printed in the learner's language, with the code and the link that verifies it."""
    async with call.read() as session:
        view = await service.printable_certificate(
            session=session,
            actor=call.actor,
            certificate_id=call.path_uuid("certificate_id"),
            verify_base_url=_verify_base_url(call),
        )
    # Rendering is CPU work; a thread keeps other requests moving meanwhile.
    pdf = await asyncio.to_thread(call.app[certificate_renderer_key].render, view)
    return web.Response(
        body=pdf,
        content_type=PDF_TYPE,
        headers={"Content-Disposition": f'attachment; filename="somo-certificate-{view.code}.pdf"'},
    )


# --- public verification ------------------------------------------------------------------


@api.get("/verify/{code}", summary="Verify a certificate code", response=CertificateVerification, auth=PUBLIC)
async def verify_certificate(call: Call[Any, Any]) -> CertificateVerification:
    """Codes are accepted as people type them: any case, with spaces or dashes, O for 0."""
    async with call.read() as session:
        view = await service.verify_certificate(
            session=session, code=call.request.match_info["code"], verify_base_url=_verify_base_url(call)
        )
        return CertificateVerification.of(view)


@public_api.get(
    "/verify/{code}",
    summary="Certificate verification page",
    auth=PUBLIC,
    content_type=HTML_TYPE,
    extra_responses={404: "No certificate has this code (an HTML page)."},
)
async def verify_certificate_page(call: Call[Any, Any]) -> web.StreamResponse:
    """The page the link and QR code on a printed certificate lead to, in English and Kiswahili."""
    code = call.request.match_info["code"]
    try:
        async with call.read() as session:
            view = await service.verify_certificate(session=session, code=code, verify_base_url=_verify_base_url(call))
    except NotFound:
        return _page(_not_found_html(code), status=404)
    return _page(_verification_html(view))


def _page(body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=body,
        content_type=HTML_TYPE,
        headers={
            # Learners' names are on this page: keep it out of search engines and caches,
            # and a revocation shows at once.
            "X-Robots-Tag": "noindex",
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "Referrer-Policy": "no-referrer",
        },
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "h1{font-size:1.4rem}.sw{color:#555}dl{display:grid;grid-template-columns:auto 1fr;gap:.5rem 1rem}"
    "dt{font-weight:600}.status{font-size:1.6rem;font-weight:700;padding:.5rem 1rem;display:inline-block}"
    ".valid{background:#e3f5e1;color:#17611b}.revoked{background:#fde2e1;color:#a11b14}"
)


def _document(title: str, content: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{content}</body></html>"
    )


def _bilingual(en: str, sw: str) -> str:
    return f'{html.escape(en)} <span class="sw" lang="sw">/ {html.escape(sw)}</span>'


def _verification_html(view: CertificateView) -> str:
    at = view.issued_at_local
    # Nairobi wall-clock time: what the learner and the school saw on the day.
    issued_en = f"{at.day} {MONTHS[Language.EN][at.month - 1]} {at.year}, {at:%H:%M} EAT"
    issued_sw = f"{at.day} {MONTHS[Language.SW][at.month - 1]} {at.year}, {at:%H:%M} EAT"
    if view.revoked:
        status = f'<p class="status revoked">{_bilingual("REVOKED", "KIMEFUTWA")}</p>'
        note = _bilingual(
            "This certificate was revoked by the institution and is no longer valid.",
            "Cheti hiki kimefutwa na taasisi na si halali tena.",
        )
    else:
        status = f'<p class="status valid">{_bilingual("VALID", "HALALI")}</p>'
        note = _bilingual(
            "This certificate was issued by Somo on behalf of the institution below.",
            "Cheti hiki kilitolewa na Somo kwa niaba ya taasisi iliyotajwa hapa chini.",
        )
    rows = [
        (_bilingual("Certificate code", "Nambari ya cheti"), html.escape(view.code)),
        (_bilingual("Learner", "Mwanafunzi"), html.escape(view.learner_name)),
        (_bilingual("Course", "Kozi"), html.escape(view.course_title)),
        (_bilingual("Institution", "Taasisi"), html.escape(view.institution_name)),
        (_bilingual("Issued", "Kimetolewa"), _bilingual(issued_en, issued_sw)),
        (_bilingual("Final score", "Alama ya mwisho"), f"{view.score_percent}%"),
    ]
    details = "".join(f"<dt>{label}</dt><dd>{value}</dd>" for label, value in rows)
    content = (
        f"<h1>{_bilingual('Certificate verification', 'Uthibitisho wa cheti')}</h1>"
        f"{status}<p>{note}</p><dl>{details}</dl>"
    )
    return _document(f"Somo certificate {view.code}", content)


def _not_found_html(code: str) -> str:
    hint = _bilingual(
        "Check the code printed on the certificate and try again.",
        "Hakikisha nambari iliyo kwenye cheti kisha ujaribu tena.",
    )
    content = (
        f"<h1>{_bilingual('Certificate not found', 'Cheti hakikupatikana')}</h1>"
        f"<p>{_bilingual('No certificate has the code', 'Hakuna cheti chenye nambari')} "
        f"<strong>{html.escape(code[:64])}</strong>.</p><p>{hint}</p>"
    )
    return _document("Somo certificate not found", content)
