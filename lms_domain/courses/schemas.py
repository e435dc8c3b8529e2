"""Course schemas, shared by the REST API, the edge and the docs."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lms_domain.courses.models import CourseAccess
from lms_domain.pagination import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT

SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"


class ListQuery(BaseModel):
    """Cursor pagination shared by every list."""

    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(
        default=None, pattern=CURSOR_PATTERN, description="The `next_cursor` of the previous page."
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class CourseListQuery(ListQuery):
    q: str | None = Field(default=None, max_length=100, description="Search in the English and Swahili titles.")
    access: CourseAccess | None = None
    published: bool | None = Field(default=None, description="Staff only; learners only ever see published courses.")
    tag: str | None = Field(default=None, max_length=64, description="Tag slug.")


class CourseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=2, max_length=120, pattern=SLUG)
    title_en: str = Field(min_length=1, max_length=200)
    title_sw: str | None = Field(default=None, max_length=200)
    summary_en: str = Field(default="", max_length=5000)
    summary_sw: str | None = Field(default=None, max_length=5000)
    access: CourseAccess = CourseAccess.FREE
    is_published: bool = False
    institution_id: uuid.UUID | None = Field(
        default=None, description="Platform admins only: the owner, or null for the shared catalogue."
    )


class CourseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str | None = Field(default=None, min_length=2, max_length=120, pattern=SLUG)
    title_en: str | None = Field(default=None, min_length=1, max_length=200)
    title_sw: str | None = Field(default=None, max_length=200)
    summary_en: str | None = Field(default=None, max_length=5000)
    summary_sw: str | None = Field(default=None, max_length=5000)
    access: CourseAccess | None = None
    is_published: bool | None = None


class CourseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    slug: str
    title_en: str
    title_sw: str | None
    summary_en: str
    summary_sw: str | None
    access: CourseAccess
    is_published: bool
    created_at: datetime
    updated_at: datetime


class CoursePage(BaseModel):
    items: list[CourseOut]
    next_cursor: str | None = None
