"""Console pages: the course editor.

Courses, their sections, lessons, files, tags and prerequisites, and their quizzes with
questions and choices side by side in English and Kiswahili. Every write goes through the
same ``lms_domain`` services as ``server/api/courses.py`` and ``server/api/content.py``
and leaves an audit entry in the same unit of work.

Each question shows how it renders on a feature phone: the preview runs the USSD engine's
own question screen and screen layout (``ussd.menus.quiz.QuestionScreen`` through
``UssdService.render``), so it cannot drift from what learners see.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from pydantic import BaseModel

from lms_domain.assessments import authoring as quizzes
from lms_domain.assessments.schemas import (
    MAX_CHOICES,
    AuthorQuestionOut,
    ChoiceCreate,
    ChoiceUpdate,
    QuestionCreate,
    QuestionUpdate,
    QuizCreate,
    QuizOut,
    QuizUpdate,
)
from lms_domain.courses import authoring, console, content
from lms_domain.courses.content_schemas import (
    AssetCreate,
    AssetOut,
    LessonCreate,
    LessonOut,
    LessonUpdate,
    SectionCreate,
    SectionOut,
    SectionUpdate,
    TagCreate,
    TagOut,
)
from lms_domain.courses.models import AssetKind, CourseAccess
from lms_domain.courses.schemas import CourseCreate, CourseListQuery, CourseOut, CourseUpdate
from lms_domain.errors import NotFound
from lms_domain.i18n import Language
from lms_domain.learning.summaries import ChoiceText, QuestionText, QuizContent
from lms_domain.pagination import MAX_LIMIT
from lms_domain.tenancy.admin import list_institutions
from lms_domain.tenancy.schemas import InstitutionListQuery
from server.admin.views import AdminRoutes, FormInvalid, Page, csv_response, every_page
from ussd.engine import UssdService
from ussd.layout import HARD_CAP, SCREEN_BUDGET, clean, paginate
from ussd.menus import SCREENS
from ussd.screens import Ctx, Deps, Hop
from ussd.session_store import Frame, QuizRun, UssdState

routes = AdminRoutes()

PAGE_SIZE = 50
CSV_MAX_ROWS = 10_000
ASSET_KINDS = [(k.value, k.value) for k in AssetKind]
ACCESS = [(a.value, a.value) for a in CourseAccess]


# The USSD preview ----------------------------------------------------------------------


@dataclass(frozen=True)
class UssdScreen:
    text: str
    length: int


@dataclass(frozen=True)
class UssdPreview:
    """How one question looks on a feature phone in one language."""

    language: str
    screens: list[UssdScreen]
    one_screen_length: int  # the question, its choices and the footer as a single screen
    replaced: bool  # some characters outside GSM-7 are shown as look-alikes
    english_fallback: bool  # no Kiswahili text: Kiswahili learners see the English

    @property
    def over_budget(self) -> bool:
        return self.one_screen_length > SCREEN_BUDGET

    @property
    def over_hard_cap(self) -> bool:
        return self.one_screen_length > HARD_CAP


class _OneQuiz:
    """Stands in for the USSD quiz cache: the question being edited, not the stored quiz."""

    def __init__(self, quiz: QuizContent) -> None:
        self._quiz = quiz

    async def get(self, quiz_id: uuid.UUID) -> QuizContent:
        return self._quiz


_PREVIEW_ID = uuid.UUID(int=1)
_MAX_PREVIEW_PAGES = 20


def _squash(value: str) -> str:
    return " ".join(value.split())


async def ussd_preview(
    language: Language,
    *,
    prompt_en: str,
    prompt_sw: str | None,
    choices: list[tuple[str, str | None]],
    number: int,
    total: int,
) -> UssdPreview:
    """Question ``number`` of ``total`` as the USSD engine renders it, page by page."""
    total = max(total, number, 1)
    number = max(number, 1)
    asked = QuestionText(
        id=_PREVIEW_ID,
        prompt_en=prompt_en,
        prompt_sw=prompt_sw,
        choices=tuple(ChoiceText(uuid.UUID(int=i + 2), en, sw) for i, (en, sw) in enumerate(choices)),
    )
    other = QuestionText(id=uuid.UUID(int=0), prompt_en="", prompt_sw=None, choices=())
    quiz = QuizContent(
        id=_PREVIEW_ID,
        course_id=_PREVIEW_ID,
        title_en="",
        title_sw=None,
        pass_mark_percent=0,
        questions=tuple(asked if i == number - 1 else other for i in range(total)),
    )
    # Screens read nothing but the quiz cache here; the rest of Deps is never touched.
    unused = cast(Any, None)
    deps = Deps(
        sessions=unused,
        read_sessions=unused,
        store=unused,
        clock=unused,
        hasher=unused,
        gateways=unused,
        spawn=unused,
        quizzes=cast(Any, _OneQuiz(quiz)),
        service_code="",
        sms_shortcode="",
        resume_ttl_s=0,
    )
    state = UssdState(
        language=language,
        learner_id=str(_PREVIEW_ID),
        quiz=QuizRun(attempt_id=str(_PREVIEW_ID), quiz_id=str(_PREVIEW_ID)),
        # As in a real run: home, the course list and the quiz list below the question.
        stack=[
            Frame(screen="home"),
            Frame(screen="courses"),
            Frame(screen="quizzes"),
            Frame(screen="question", args={"index": number - 1}),
        ],
    )
    ctx = Ctx(deps, Hop(session_id="preview", phone="", network=None, service_code="", text=""), state)
    engine = UssdService(deps)
    frame = state.stack[-1]
    screens: list[UssdScreen] = []
    for shown in range(_MAX_PREVIEW_PAGES):
        frame.page = shown
        reply = await engine.render(ctx)
        if frame.page != shown:  # past the last page: the engine clamps to it
            break
        rendered = reply.render()
        screens.append(UssdScreen(rendered, len(rendered)))
    view = await SCREENS["question"].view(ctx, frame)
    whole = paginate(
        header=view.header,
        items=view.items,
        nav=[ctx.t("nav.back"), ctx.t("nav.home")],
        more_label=ctx.t("nav.more"),
        page=0,
        budget=1_000_000,
    )
    texts = [prompt_en, *(en for en, _ in choices)]
    if language is Language.SW:
        texts = [prompt_sw or prompt_en, *((sw or en) for en, sw in choices)]
    return UssdPreview(
        language=language.value,
        screens=screens,
        one_screen_length=len("CON ") + len(whole.body),
        replaced=any(clean(t) != _squash(t) for t in texts),
        english_fallback=language is Language.SW and (not prompt_sw or any(not sw for _, sw in choices)),
    )


async def previews_of(
    *, prompt_en: str, prompt_sw: str | None, choices: list[tuple[str, str | None]], number: int, total: int
) -> list[UssdPreview]:
    return [
        await ussd_preview(
            language, prompt_en=prompt_en, prompt_sw=prompt_sw, choices=choices, number=number, total=total
        )
        for language in (Language.EN, Language.SW)
    ]


def _numbering(questions: list[AuthorQuestionOut], question_id: uuid.UUID | None) -> tuple[int, int]:
    """Where a question stands as the USSD menu numbers them: only questions with choices are
    asked there, in position order; a new one (or one with no choices yet) comes last."""
    asked = [q.id for q in questions if q.choices and q.id != question_id]
    in_place = [q.id for q in questions if q.choices or q.id == question_id]
    if question_id is not None and question_id in in_place:
        return in_place.index(question_id) + 1, len(in_place)
    return len(asked) + 1, len(asked) + 1


async def _question_previews(question: AuthorQuestionOut, questions: list[AuthorQuestionOut]) -> list[UssdPreview]:
    number, total = _numbering(questions, question.id)
    return await previews_of(
        prompt_en=question.prompt_en,
        prompt_sw=question.prompt_sw,
        choices=[(c.text_en, c.text_sw) for c in question.choices],
        number=number,
        total=total,
    )


# Form helpers --------------------------------------------------------------------------


def _text(page: Page, name: str) -> str:
    return str(page.form.get(name, "")).strip()


def _optional(page: Page, name: str) -> str | None:
    return _text(page, name) or None


def _flag(page: Page, name: str) -> bool:
    return _text(page, name) in ("on", "1", "true", "yes")


def _number(page: Page, name: str, default: int | str | None = None) -> int | str | None:
    """The field as typed (pydantic reads and checks the number), or ``default`` when blank."""
    return _text(page, name) or default


def _uuid_field(page: Page, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(_text(page, name))
    except ValueError:
        raise FormInvalid({name: page._("Choose one from the list.")}) from None


def _values(model: BaseModel | None, **extra: Any) -> dict[str, Any]:
    """A record as form values: None shown as an empty field."""
    raw = model.model_dump() if model is not None else {}
    raw.update(extra)
    return {k: ("" if v is None else v) for k, v in raw.items()}


def _course_url(course_id: uuid.UUID) -> str:
    return f"/admin/courses/{course_id}"


# Courses -------------------------------------------------------------------------------


def _list_query(page: Page, *, cursor: str | None, limit: int) -> CourseListQuery:
    published = {"yes": True, "no": False}.get(page.q("published"))
    return page.validate(
        CourseListQuery,
        {
            "q": page.q("q") or None,
            "published": published,
            "access": page.q("access") or None,
            "tag": page.q("tag") or None,
            "cursor": cursor,
            "limit": limit,
        },
    )


@routes.get("/admin/courses")
async def list_courses(page: Page) -> web.StreamResponse:
    if page.wants_csv:
        return await _courses_csv(page)
    query = _list_query(page, cursor=page.q("cursor") or None, limit=PAGE_SIZE)
    async with page.read() as session:
        rows, cursor = await authoring.list_courses(session=session, actor=page.actor, query=query)
        courses = [CourseOut.model_validate(dict(r)) for r in rows]
    return await page.render(
        "admin/content/courses.html", {"courses": courses, "next_cursor": cursor, "access": ACCESS}
    )


async def _courses_csv(page: Page) -> web.StreamResponse:
    async with page.read() as session:

        async def fetch(cursor: str | None) -> tuple[list[CourseOut], str | None]:
            query = _list_query(page, cursor=cursor, limit=MAX_LIMIT)
            rows, next_cursor = await authoring.list_courses(session=session, actor=page.actor, query=query)
            return [CourseOut.model_validate(dict(r)) for r in rows], next_cursor

        courses = await every_page(fetch, max_rows=CSV_MAX_ROWS)
    header = ["id", "institution_id", "slug", "title_en", "title_sw", "access", "published", "created", "updated"]
    return csv_response(
        "courses.csv",
        header,
        (
            [
                c.id,
                c.institution_id or "catalogue",
                c.slug,
                c.title_en,
                c.title_sw,
                c.access.value,
                "yes" if c.is_published else "no",
                c.created_at,
                c.updated_at,
            ]
            for c in courses
        ),
    )


async def _owners(page: Page) -> list[tuple[str, str]]:
    """The institutions a platform admin may give a course to ("" is the shared catalogue)."""
    if not page.actor.is_platform_admin:
        return []
    async with page.read() as session:
        rows, _ = await list_institutions(
            session=session, actor=page.actor, query=InstitutionListQuery(limit=MAX_LIMIT)
        )
        return [(str(i.id), i.name) for i in rows]


async def _new_course_form(
    page: Page, values: Mapping[str, Any], errors: Mapping[str, str], status: int = 200
) -> web.StreamResponse:
    return await page.render(
        "admin/content/course_new.html",
        {"values": values, "errors": errors, "owners": await _owners(page), "access": ACCESS},
        status=status,
    )


@routes.get("/admin/courses/new")
async def new_course(page: Page) -> web.StreamResponse:
    return await _new_course_form(page, _values(None, access="free", institution_id=""), {})


def _course_fields(page: Page) -> dict[str, Any]:
    return {
        "slug": _text(page, "slug"),
        "title_en": _text(page, "title_en"),
        "title_sw": _optional(page, "title_sw"),
        "summary_en": _text(page, "summary_en"),
        "summary_sw": _optional(page, "summary_sw"),
        "access": _text(page, "access") or CourseAccess.FREE.value,
        "is_published": _flag(page, "is_published"),
    }


@routes.post("/admin/courses")
async def create_course(page: Page) -> web.StreamResponse:
    fields = _course_fields(page)
    if page.actor.is_platform_admin:
        fields["institution_id"] = _optional(page, "institution_id")
    try:
        data = page.validate(CourseCreate, fields)
    except FormInvalid as invalid:
        return await _new_course_form(page, _values(None, **fields), invalid.errors, status=422)
    async with page.uow() as session:
        course = await authoring.create_course(session=session, actor=page.actor, data=data)
        out = CourseOut.model_validate(course)
        await page.audit(
            session,
            action="course.create",
            target_type="course",
            target_id=course.id,
            institution_id=course.institution_id,
            after=out,
        )
    page.flash(page._("Course created."))
    return await page.redirect(_course_url(out.id))


async def _course_page(
    page: Page,
    course_id: uuid.UUID,
    *,
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    async with page.read() as session:
        outline = await console.course_outline(session=session, actor=page.actor, course_id=course_id)
    return await page.render(
        "admin/content/course.html",
        {
            "o": outline,
            "c": outline.course,
            "values": values if values is not None else _values(outline.course),
            "errors": errors or {},
            "access": ACCESS,
        },
        status=status,
    )


@routes.get("/admin/courses/{course_id}")
async def show_course(page: Page) -> web.StreamResponse:
    return await _course_page(page, page.path_uuid("course_id"))


@routes.post("/admin/courses/{course_id}")
async def update_course(page: Page) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    fields = _course_fields(page)
    try:
        data = page.validate(CourseUpdate, fields)
    except FormInvalid as invalid:
        return await _course_page(page, course_id, values=_values(None, **fields), errors=invalid.errors, status=422)
    async with page.uow() as session:
        before = CourseOut.model_validate(
            await authoring.get_course(session=session, actor=page.actor, course_id=course_id)
        )
        course = await authoring.update_course(session=session, actor=page.actor, course_id=course_id, data=data)
        await page.audit(
            session,
            action="course.update",
            target_type="course",
            target_id=course.id,
            institution_id=course.institution_id,
            before=before,
            after=CourseOut.model_validate(course),
        )
    page.flash(page._("Saved."))
    return await page.redirect(_course_url(course_id))


@routes.post("/admin/courses/{course_id}/delete")
async def delete_course(page: Page) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    async with page.uow() as session:
        before = CourseOut.model_validate(
            await authoring.get_course(session=session, actor=page.actor, course_id=course_id)
        )
        await authoring.delete_course(session=session, actor=page.actor, course_id=course_id, clock=page.clock)
        await page.audit(
            session,
            action="course.delete",
            target_type="course",
            target_id=course_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("Course deleted."))
    return await page.redirect("/admin/courses")


# Sections ------------------------------------------------------------------------------


def _section_fields(page: Page) -> dict[str, Any]:
    return {
        "title_en": _text(page, "title_en"),
        "title_sw": _optional(page, "title_sw"),
        "position": _number(page, "position", 0),
    }


@routes.post("/admin/courses/{course_id}/sections")
async def create_section(page: Page) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    data = page.validate(SectionCreate, _section_fields(page))
    async with page.uow() as session:
        section = await content.create_section(session=session, actor=page.actor, course_id=course_id, data=data)
        await page.audit(
            session,
            action="section.create",
            target_type="section",
            target_id=section.id,
            institution_id=section.institution_id,
            after=SectionOut.model_validate(section),
        )
    page.flash(page._("Section added."))
    return await page.redirect(_course_url(course_id))


@routes.post("/admin/courses/{course_id}/sections/{section_id}")
async def update_section(page: Page) -> web.StreamResponse:
    section_id = page.path_uuid("section_id")
    data = page.validate(SectionUpdate, _section_fields(page))
    async with page.uow() as session:
        section = await content.editable_section(session=session, actor=page.actor, section_id=section_id)
        before = SectionOut.model_validate(section)
        section = await content.update_section(session=session, actor=page.actor, section_id=section_id, data=data)
        await page.audit(
            session,
            action="section.update",
            target_type="section",
            target_id=section.id,
            institution_id=section.institution_id,
            before=before,
            after=SectionOut.model_validate(section),
        )
    page.flash(page._("Saved."))
    return await page.redirect(_course_url(before.course_id))


@routes.post("/admin/courses/{course_id}/sections/{section_id}/delete")
async def delete_section(page: Page) -> web.StreamResponse:
    section_id = page.path_uuid("section_id")
    async with page.uow() as session:
        before = SectionOut.model_validate(
            await content.editable_section(session=session, actor=page.actor, section_id=section_id)
        )
        await content.delete_section(session=session, actor=page.actor, section_id=section_id, clock=page.clock)
        await page.audit(
            session,
            action="section.delete",
            target_type="section",
            target_id=section_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("Section deleted."))
    return await page.redirect(_course_url(before.course_id))


# Lessons and their files ---------------------------------------------------------------


def _lesson_url(lesson: LessonOut) -> str:
    return f"/admin/courses/{lesson.course_id}/lessons/{lesson.id}"


@routes.post("/admin/courses/{course_id}/sections/{section_id}/lessons")
async def create_lesson(page: Page) -> web.StreamResponse:
    section_id = page.path_uuid("section_id")
    data = page.validate(
        LessonCreate,
        {
            "title_en": _text(page, "title_en"),
            "title_sw": _optional(page, "title_sw"),
            "body_en": _text(page, "body_en"),
            "body_sw": _optional(page, "body_sw"),
            "position": _number(page, "position", 0),
            "duration_minutes": _number(page, "duration_minutes", 0),
        },
    )
    async with page.uow() as session:
        lesson = await content.create_lesson(session=session, actor=page.actor, section_id=section_id, data=data)
        out = LessonOut.model_validate(lesson)
        await page.audit(
            session,
            action="lesson.create",
            target_type="lesson",
            target_id=lesson.id,
            institution_id=lesson.institution_id,
            after=out,
        )
    page.flash(page._("Lesson added."))
    return await page.redirect(_lesson_url(out))


@routes.get("/admin/courses/{course_id}/lessons/{lesson_id}")
async def show_lesson(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        detail = await console.lesson_detail(
            session=session,
            actor=page.actor,
            course_id=page.path_uuid("course_id"),
            lesson_id=page.path_uuid("lesson_id"),
        )
    return await page.render(
        "admin/content/lesson.html",
        {"d": detail, "c": detail.course, "lesson": detail.lesson, "kinds": ASSET_KINDS},
    )


@routes.post("/admin/courses/{course_id}/lessons/{lesson_id}")
async def update_lesson(page: Page) -> web.StreamResponse:
    lesson_id = page.path_uuid("lesson_id")
    data = page.validate(
        LessonUpdate,
        {
            "section_id": _optional(page, "section_id"),
            "title_en": _text(page, "title_en"),
            "title_sw": _optional(page, "title_sw"),
            "body_en": _text(page, "body_en"),
            "body_sw": _optional(page, "body_sw"),
            "position": _number(page, "position", 0),
            "duration_minutes": _number(page, "duration_minutes", 0),
        },
    )
    async with page.uow() as session:
        before = LessonOut.model_validate(
            await content.editable_lesson(session=session, actor=page.actor, lesson_id=lesson_id)
        )
        lesson = await content.update_lesson(session=session, actor=page.actor, lesson_id=lesson_id, data=data)
        after = LessonOut.model_validate(lesson)
        await page.audit(
            session,
            action="lesson.update",
            target_type="lesson",
            target_id=lesson.id,
            institution_id=lesson.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(_lesson_url(after))


@routes.post("/admin/courses/{course_id}/lessons/{lesson_id}/delete")
async def delete_lesson(page: Page) -> web.StreamResponse:
    lesson_id = page.path_uuid("lesson_id")
    async with page.uow() as session:
        before = LessonOut.model_validate(
            await content.editable_lesson(session=session, actor=page.actor, lesson_id=lesson_id)
        )
        await content.delete_lesson(session=session, actor=page.actor, lesson_id=lesson_id, clock=page.clock)
        await page.audit(
            session,
            action="lesson.delete",
            target_type="lesson",
            target_id=lesson_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("Lesson deleted."))
    return await page.redirect(_course_url(before.course_id))


@routes.post("/admin/courses/{course_id}/lessons/{lesson_id}/assets")
async def create_asset(page: Page) -> web.StreamResponse:
    lesson_id = page.path_uuid("lesson_id")
    data = page.validate(
        AssetCreate,
        {
            "kind": _text(page, "kind"),
            "title": _text(page, "title"),
            "language": _optional(page, "language"),
            "url": _optional(page, "url"),
            "file_path": _optional(page, "file_path"),
            "mime_type": _text(page, "mime_type") or "application/octet-stream",
            "checksum_sha256": _text(page, "checksum_sha256").lower(),
            "size_bytes": _number(page, "size_bytes", ""),
        },
    )
    async with page.uow() as session:
        asset = await content.create_asset(session=session, actor=page.actor, lesson_id=lesson_id, data=data)
        await page.audit(
            session,
            action="asset.create",
            target_type="asset",
            target_id=asset.id,
            institution_id=asset.institution_id,
            after=AssetOut.model_validate(asset),
        )
    page.flash(page._("File added."))
    return await page.redirect(f"/admin/courses/{page.path_uuid('course_id')}/lessons/{lesson_id}")


@routes.post("/admin/courses/{course_id}/lessons/{lesson_id}/assets/{asset_id}/delete")
async def delete_asset(page: Page) -> web.StreamResponse:
    course_id, lesson_id, asset_id = (page.path_uuid(n) for n in ("course_id", "lesson_id", "asset_id"))
    async with page.uow() as session:
        detail = await console.lesson_detail(
            session=session, actor=page.actor, course_id=course_id, lesson_id=lesson_id
        )
        before = next((a for a in detail.assets if a.id == asset_id), None)
        if before is None:
            raise NotFound("asset not found")
        await content.delete_asset(session=session, actor=page.actor, asset_id=asset_id, clock=page.clock)
        await page.audit(
            session,
            action="asset.delete",
            target_type="asset",
            target_id=asset_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("File removed."))
    return await page.redirect(f"/admin/courses/{course_id}/lessons/{lesson_id}")


# Tags and prerequisites ----------------------------------------------------------------


@routes.post("/admin/courses/{course_id}/tags")
async def attach_tag(page: Page) -> web.StreamResponse:
    """Attach a listed tag, or create one (its slug and names typed in) and attach it."""
    course_id = page.path_uuid("course_id")
    new_tag = None
    if _text(page, "slug"):
        new_tag = page.validate(
            TagCreate,
            {"slug": _text(page, "slug"), "name_en": _text(page, "name_en"), "name_sw": _optional(page, "name_sw")},
        )
        tag_id = None
    else:
        tag_id = _uuid_field(page, "tag_id")
    async with page.uow() as session:
        course = await content.editable_course(session=session, actor=page.actor, course_id=course_id)
        if new_tag is not None:
            # The course's owner owns the tag too, so a platform admin's tag lands where it is used.
            new_tag.institution_id = course.institution_id
            created = await content.create_tag(session=session, actor=page.actor, data=new_tag)
            await page.audit(
                session,
                action="tag.create",
                target_type="tag",
                target_id=created.id,
                institution_id=created.institution_id,
                after=TagOut.model_validate(created),
            )
            tag_id = created.id
        assert tag_id is not None
        tag = await content.attach_tag(session=session, actor=page.actor, course_id=course_id, tag_id=tag_id)
        await page.audit(
            session,
            action="course.tag",
            target_type="course",
            target_id=course_id,
            institution_id=course.institution_id,
            after={"tag_id": tag.id, "slug": tag.slug},
        )
    page.flash(page._("Tag added."))
    return await page.redirect(_course_url(course_id))


@routes.post("/admin/courses/{course_id}/tags/{tag_id}/delete")
async def detach_tag(page: Page) -> web.StreamResponse:
    course_id, tag_id = page.path_uuid("course_id"), page.path_uuid("tag_id")
    async with page.uow() as session:
        course = await content.editable_course(session=session, actor=page.actor, course_id=course_id)
        await content.detach_tag(
            session=session, actor=page.actor, course_id=course_id, tag_id=tag_id, clock=page.clock
        )
        await page.audit(
            session,
            action="course.untag",
            target_type="course",
            target_id=course_id,
            institution_id=course.institution_id,
            before={"tag_id": tag_id},
        )
    page.flash(page._("Tag removed."))
    return await page.redirect(_course_url(course_id))


@routes.post("/admin/courses/{course_id}/prerequisites")
async def add_prerequisite(page: Page) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    required_id = _uuid_field(page, "required_course_id")
    async with page.uow() as session:
        link = await content.add_prerequisite(
            session=session, actor=page.actor, course_id=course_id, required_course_id=required_id
        )
        await page.audit(
            session,
            action="course.require",
            target_type="course",
            target_id=course_id,
            institution_id=link.institution_id,
            after={"required_course_id": required_id},
        )
    page.flash(page._("Prerequisite added."))
    return await page.redirect(_course_url(course_id))


@routes.post("/admin/courses/{course_id}/prerequisites/{required_id}/delete")
async def remove_prerequisite(page: Page) -> web.StreamResponse:
    course_id, required_id = page.path_uuid("course_id"), page.path_uuid("required_id")
    async with page.uow() as session:
        course = await content.editable_course(session=session, actor=page.actor, course_id=course_id)
        await content.remove_prerequisite(
            session=session, actor=page.actor, course_id=course_id, required_course_id=required_id, clock=page.clock
        )
        await page.audit(
            session,
            action="course.unrequire",
            target_type="course",
            target_id=course_id,
            institution_id=course.institution_id,
            before={"required_course_id": required_id},
        )
    page.flash(page._("Prerequisite removed."))
    return await page.redirect(_course_url(course_id))


# Quizzes -------------------------------------------------------------------------------


def _quiz_url(quiz: QuizOut) -> str:
    return f"/admin/courses/{quiz.course_id}/quizzes/{quiz.id}"


def _quiz_fields(page: Page) -> dict[str, Any]:
    return {
        "title_en": _text(page, "title_en"),
        "title_sw": _optional(page, "title_sw"),
        "section_id": _optional(page, "section_id"),
        "position": _number(page, "position", 0),
        "pass_mark_percent": _number(page, "pass_mark_percent", 50),
        "max_attempts": _number(page, "max_attempts"),
        "is_final": _flag(page, "is_final"),
        "is_published": _flag(page, "is_published"),
    }


@routes.post("/admin/courses/{course_id}/quizzes")
async def create_quiz(page: Page) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    data = page.validate(QuizCreate, _quiz_fields(page))
    async with page.uow() as session:
        quiz = await quizzes.create_quiz(session=session, actor=page.actor, course_id=course_id, data=data)
        out = QuizOut.model_validate(quiz)
        await page.audit(
            session,
            action="quiz.create",
            target_type="quiz",
            target_id=quiz.id,
            institution_id=quiz.institution_id,
            after=out,
        )
    page.flash(page._("Quiz added."))
    return await page.redirect(_quiz_url(out))


def _blank_question(position: int) -> dict[str, Any]:
    return {
        "prompt_en": "",
        "prompt_sw": "",
        "points": 1,
        "position": position,
        "correct": "0",
        "choices": [{"id": "", "text_en": "", "text_sw": ""} for _ in range(4)],
    }


async def _quiz_page(
    page: Page,
    course_id: uuid.UUID,
    quiz_id: uuid.UUID,
    *,
    new_question: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    async with page.read() as session:
        detail = await console.quiz_detail(session=session, actor=page.actor, course_id=course_id, quiz_id=quiz_id)
    previews = {q.id: await _question_previews(q, detail.questions) for q in detail.questions}
    form = new_question or _blank_question(max((q.position for q in detail.questions), default=-1) + 1)
    number, total = _numbering(detail.questions, None)
    new_previews = await previews_of(
        prompt_en=form["prompt_en"],
        prompt_sw=form["prompt_sw"] or None,
        choices=[(c["text_en"], c["text_sw"] or None) for c in form["choices"] if c["text_en"] or c["text_sw"]],
        number=number,
        total=total,
    )
    return await page.render(
        "admin/content/quiz.html",
        {
            "d": detail,
            "c": detail.course,
            "quiz": detail.quiz,
            "values": _values(detail.quiz),
            "previews": previews,
            "q": form,
            "new_previews": new_previews,
            "errors": errors or {},
            "max_choices": MAX_CHOICES,
        },
        status=status,
    )


@routes.get("/admin/courses/{course_id}/quizzes/{quiz_id}")
async def show_quiz(page: Page) -> web.StreamResponse:
    return await _quiz_page(page, page.path_uuid("course_id"), page.path_uuid("quiz_id"))


@routes.post("/admin/courses/{course_id}/quizzes/{quiz_id}")
async def update_quiz(page: Page) -> web.StreamResponse:
    quiz_id = page.path_uuid("quiz_id")
    data = page.validate(QuizUpdate, _quiz_fields(page))
    async with page.uow() as session:
        before = QuizOut.model_validate(await quizzes.get_quiz(session=session, actor=page.actor, quiz_id=quiz_id))
        quiz = await quizzes.update_quiz(session=session, actor=page.actor, quiz_id=quiz_id, data=data)
        after = QuizOut.model_validate(quiz)
        await page.audit(
            session,
            action="quiz.update",
            target_type="quiz",
            target_id=quiz.id,
            institution_id=quiz.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(_quiz_url(after))


@routes.post("/admin/courses/{course_id}/quizzes/{quiz_id}/delete")
async def delete_quiz(page: Page) -> web.StreamResponse:
    quiz_id = page.path_uuid("quiz_id")
    async with page.uow() as session:
        before = QuizOut.model_validate(await quizzes.get_quiz(session=session, actor=page.actor, quiz_id=quiz_id))
        await quizzes.delete_quiz(session=session, actor=page.actor, quiz_id=quiz_id, clock=page.clock)
        await page.audit(
            session,
            action="quiz.delete",
            target_type="quiz",
            target_id=quiz_id,
            institution_id=before.institution_id,
            before=before,
        )
    page.flash(page._("Quiz deleted."))
    return await page.redirect(_course_url(before.course_id))


# Questions and choices -----------------------------------------------------------------


@dataclass
class _QuestionForm:
    """A question form as typed: its fields, its choice rows and which row is correct."""

    values: dict[str, Any]
    rows: list[dict[str, str]]  # id ("" for a new row), text_en, text_sw, remove ("on")
    correct: int | None

    @classmethod
    def read(cls, page: Page) -> _QuestionForm:
        rows = []
        for i in range(MAX_CHOICES):
            rows.append(
                {
                    "id": _text(page, f"choice_id_{i}"),
                    "text_en": _text(page, f"text_en_{i}"),
                    "text_sw": _text(page, f"text_sw_{i}"),
                    "remove": "on" if _flag(page, f"remove_{i}") else "",
                }
            )
        picked = _text(page, "correct")
        correct = (
            int(picked)
            if picked.isascii() and picked.isdecimal() and len(picked) <= 2 and int(picked) < MAX_CHOICES
            else None
        )
        values = {
            "prompt_en": _text(page, "prompt_en"),
            "prompt_sw": _text(page, "prompt_sw"),
            "points": _text(page, "points") or 1,
            "position": _text(page, "position") or 0,
            "correct": picked,
            "choices": rows,
        }
        return cls(values=values, rows=rows, correct=correct)

    def kept(self) -> list[tuple[int, dict[str, str]]]:
        """The rows that will be choices: typed in, and not marked for removal."""
        return [(i, r) for i, r in enumerate(self.rows) if (r["text_en"] or r["text_sw"]) and not r["remove"]]

    def preview_choices(self) -> list[tuple[str, str | None]]:
        return [(r["text_en"], r["text_sw"] or None) for _, r in self.kept()]


def _choice_fields(row: Mapping[str, str], *, correct: bool, position: int) -> dict[str, Any]:
    return {"text_en": row["text_en"], "text_sw": row["text_sw"] or None, "is_correct": correct, "position": position}


def _check_choices(page: Page, form: _QuestionForm) -> None:
    kept = form.kept()
    if len(kept) < 2:
        raise FormInvalid({"choices": page._("Give at least two choices.")})
    if form.correct is None or form.correct not in {i for i, _ in kept}:
        raise FormInvalid({"correct": page._("Mark which choice is correct.")})


@routes.post("/admin/courses/{course_id}/quizzes/{quiz_id}/questions")
async def create_question(page: Page) -> web.StreamResponse:
    course_id, quiz_id = page.path_uuid("course_id"), page.path_uuid("quiz_id")
    form = _QuestionForm.read(page)
    try:
        _check_choices(page, form)
        data = page.validate(
            QuestionCreate,
            {
                "prompt_en": form.values["prompt_en"],
                "prompt_sw": form.values["prompt_sw"] or None,
                "points": form.values["points"],
                "position": form.values["position"],
                "choices": [
                    _choice_fields(row, correct=i == form.correct, position=n) for n, (i, row) in enumerate(form.kept())
                ],
            },
        )
    except FormInvalid as invalid:
        return await _quiz_page(page, course_id, quiz_id, new_question=form.values, errors=invalid.errors, status=422)
    async with page.uow() as session:
        created = await quizzes.create_question(session=session, actor=page.actor, quiz_id=quiz_id, data=data)
        out = AuthorQuestionOut.of(created.question, created.choices)
        await page.audit(
            session,
            action="question.create",
            target_type="question",
            target_id=out.id,
            institution_id=created.question.institution_id,
            after=out,
        )
    page.flash(page._("Question added."))
    return await page.redirect(f"/admin/courses/{course_id}/quizzes/{quiz_id}")


def _question_values(question: AuthorQuestionOut) -> dict[str, Any]:
    rows = [{"id": str(c.id), "text_en": c.text_en, "text_sw": c.text_sw or "", "remove": ""} for c in question.choices]
    rows += [{"id": "", "text_en": "", "text_sw": "", "remove": ""} for _ in range(MAX_CHOICES - len(rows))]
    correct = next((str(i) for i, c in enumerate(question.choices) if c.is_correct), "")
    return {
        "prompt_en": question.prompt_en,
        "prompt_sw": question.prompt_sw or "",
        "points": question.points,
        "position": question.position,
        "correct": correct,
        "choices": rows,
    }


async def _question_page(
    page: Page,
    question_id: uuid.UUID,
    *,
    form: _QuestionForm | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    course_id = page.path_uuid("course_id")
    async with page.read() as session:
        quiz, question = await console.question_for_editing(session=session, actor=page.actor, question_id=question_id)
        if quiz.course_id != course_id:
            raise NotFound("question not found")
        detail = await console.quiz_detail(session=session, actor=page.actor, course_id=course_id, quiz_id=quiz.id)
    values = form.values if form is not None else _question_values(question)
    number, total = _numbering(detail.questions, question.id)
    previews = await previews_of(
        prompt_en=values["prompt_en"],
        prompt_sw=values["prompt_sw"] or None,
        choices=form.preview_choices() if form is not None else [(c.text_en, c.text_sw) for c in question.choices],
        number=number,
        total=total,
    )
    return await page.render(
        "admin/content/question.html",
        {
            "c": detail.course,
            "quiz": quiz,
            "question": question,
            "q": values,
            "previews": previews,
            "errors": errors or {},
        },
        status=status,
    )


@routes.get("/admin/courses/{course_id}/questions/{question_id}")
async def show_question(page: Page) -> web.StreamResponse:
    return await _question_page(page, page.path_uuid("question_id"))


@routes.post("/admin/courses/{course_id}/questions/{question_id}")
async def update_question(page: Page) -> web.StreamResponse:
    """The question and all its choice rows in one form: changed rows are updated, new rows
    added, rows marked for removal deleted, all in one unit of work."""
    question_id = page.path_uuid("question_id")
    form = _QuestionForm.read(page)
    try:
        _check_choices(page, form)
        data = page.validate(
            QuestionUpdate,
            {
                "prompt_en": form.values["prompt_en"],
                "prompt_sw": form.values["prompt_sw"] or None,
                "points": form.values["points"],
                "position": form.values["position"],
            },
        )
        changes: list[tuple[str, uuid.UUID | None, BaseModel | None]] = []
        for n, (i, row) in enumerate(form.kept()):
            fields = _choice_fields(row, correct=i == form.correct, position=n)
            if row["id"]:
                changes.append(("update", _row_id(page, row), page.validate(ChoiceUpdate, fields)))
            else:
                changes.append(("add", None, page.validate(ChoiceCreate, fields)))
        for row in form.rows:
            if row["id"] and (row["remove"] or not (row["text_en"] or row["text_sw"])):
                changes.insert(0, ("delete", _row_id(page, row), None))
    except FormInvalid as invalid:
        return await _question_page(page, question_id, form=form, errors=invalid.errors, status=422)
    async with page.uow() as session:
        quiz, before = await console.question_for_editing(session=session, actor=page.actor, question_id=question_id)
        known = {c.id for c in before.choices}
        await quizzes.update_question(session=session, actor=page.actor, question_id=question_id, data=data)
        # Unmark before marking, so the question never holds two correct choices mid-way.
        changes.sort(key=lambda ch: {"delete": 0, "update": 1, "add": 2}[ch[0]] + (0.5 if _marks(ch[2]) else 0))
        for kind, choice_id, body in changes:
            if choice_id is not None and choice_id not in known:
                raise NotFound("choice not found")
            if kind == "delete":
                assert choice_id is not None
                await quizzes.delete_choice(session=session, actor=page.actor, choice_id=choice_id, clock=page.clock)
            elif kind == "update":
                assert choice_id is not None and isinstance(body, ChoiceUpdate)
                await quizzes.update_choice(session=session, actor=page.actor, choice_id=choice_id, data=body)
            else:
                assert isinstance(body, ChoiceCreate)
                await quizzes.add_choice(session=session, actor=page.actor, question_id=question_id, data=body)
        _, after = await console.question_for_editing(session=session, actor=page.actor, question_id=question_id)
        await page.audit(
            session,
            action="question.update",
            target_type="question",
            target_id=question_id,
            institution_id=quiz.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("Saved."))
    return await page.redirect(_quiz_url(quiz))


def _row_id(page: Page, row: Mapping[str, str]) -> uuid.UUID:
    try:
        return uuid.UUID(row["id"])
    except ValueError:
        raise FormInvalid({"choices": page._("Choose one from the list.")}) from None


def _marks(body: BaseModel | None) -> bool:
    return bool(getattr(body, "is_correct", False))


@routes.post("/admin/courses/{course_id}/questions/{question_id}/delete")
async def delete_question(page: Page) -> web.StreamResponse:
    question_id = page.path_uuid("question_id")
    async with page.uow() as session:
        quiz, before = await console.question_for_editing(session=session, actor=page.actor, question_id=question_id)
        await quizzes.delete_question(session=session, actor=page.actor, question_id=question_id, clock=page.clock)
        await page.audit(
            session,
            action="question.delete",
            target_type="question",
            target_id=question_id,
            institution_id=quiz.institution_id,
            before=before,
        )
    page.flash(page._("Question deleted."))
    return await page.redirect(_quiz_url(quiz))


@routes.post("/admin/courses/{course_id}/quizzes/{quiz_id}/preview")
async def preview_question(page: Page) -> web.StreamResponse:
    """The USSD preview of the question form as typed, as an HTML fragment (``data-preview``)."""
    course_id, quiz_id = page.path_uuid("course_id"), page.path_uuid("quiz_id")
    async with page.read() as session:
        detail = await console.quiz_detail(session=session, actor=page.actor, course_id=course_id, quiz_id=quiz_id)
    form = _QuestionForm.read(page)
    question_id = None
    if _text(page, "question_id"):
        try:
            question_id = uuid.UUID(_text(page, "question_id"))
        except ValueError:
            question_id = None
    number, total = _numbering(detail.questions, question_id)
    previews = await previews_of(
        prompt_en=form.values["prompt_en"],
        prompt_sw=form.values["prompt_sw"] or None,
        choices=form.preview_choices(),
        number=number,
        total=total,
    )
    return await page.render("admin/content/ussd_preview.html", {"previews": previews})
