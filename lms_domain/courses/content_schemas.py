"""Schemas of a course's structure: sections, lessons, assets, tags and prerequisites.

Every bound mirrors a database column or constraint, so bad input is refused here as a
422 and never reaches the database as an error (Postgres text cannot hold NUL, integer
columns overflow), whatever a client or a fuzzer sends.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lms_domain.courses.models import AssetKind
from lms_domain.courses.schemas import SLUG

# Postgres refuses NUL in text columns; refusing it here keeps that a 422, not a 500.
PLAIN = r"^[^\x00]*$"
MAX_POSITION = 100_000
MAX_DURATION_MINUTES = 100_000
MAX_BODY = 100_000
# Within JavaScript's safe integers, so every client reads the size exactly.
MAX_SIZE_BYTES = 2**53 - 1
SHA256_HEX = r"^[0-9a-f]{64}$"
HTTP_URL = r"^https?://[^\s\x00]+$"
# Relative, "/"-separated; no segment starts with a dot, so "..", "." and hidden files are out.
RELATIVE_PATH = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
MIME_TYPE = r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$"


class SectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str = Field(min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    position: int = Field(default=0, ge=0, le=MAX_POSITION)


class SectionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str | None = Field(default=None, min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)


class SectionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    course_id: uuid.UUID
    institution_id: uuid.UUID | None
    position: int
    title_en: str
    title_sw: str | None
    created_at: datetime
    updated_at: datetime


class SectionPage(BaseModel):
    items: list[SectionOut]
    next_cursor: str | None = None


class LessonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str = Field(min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    body_en: str = Field(default="", max_length=MAX_BODY, pattern=PLAIN)
    body_sw: str | None = Field(default=None, max_length=MAX_BODY, pattern=PLAIN)
    position: int = Field(default=0, ge=0, le=MAX_POSITION)
    duration_minutes: int = Field(default=0, ge=0, le=MAX_DURATION_MINUTES)


class LessonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    section_id: uuid.UUID | None = Field(default=None, description="Move the lesson to another section of its course.")
    title_en: str | None = Field(default=None, min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    body_en: str | None = Field(default=None, max_length=MAX_BODY, pattern=PLAIN)
    body_sw: str | None = Field(default=None, max_length=MAX_BODY, pattern=PLAIN)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)
    duration_minutes: int | None = Field(default=None, ge=0, le=MAX_DURATION_MINUTES)


class LessonSummaryOut(BaseModel):
    """A lesson without its bodies: lists stay small on a slow link."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    section_id: uuid.UUID
    course_id: uuid.UUID
    institution_id: uuid.UUID | None
    position: int
    title_en: str
    title_sw: str | None
    duration_minutes: int
    created_at: datetime
    updated_at: datetime


class LessonOut(LessonSummaryOut):
    body_en: str
    body_sw: str | None


class LessonPage(BaseModel):
    items: list[LessonSummaryOut]
    next_cursor: str | None = None


class AssetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: AssetKind
    title: str = Field(default="", max_length=200, pattern=PLAIN)
    language: Literal["en", "sw"] | None = Field(default=None, description="Null for language-neutral files.")
    url: str | None = Field(default=None, max_length=2048, pattern=HTTP_URL)
    file_path: str | None = Field(
        default=None, max_length=1024, pattern=RELATIVE_PATH, description="Relative to the asset store."
    )
    mime_type: str = Field(default="application/octet-stream", max_length=127, pattern=MIME_TYPE)
    checksum_sha256: str = Field(pattern=SHA256_HEX, description="Lowercase hex; edges verify their copy with it.")
    size_bytes: int = Field(ge=0, le=MAX_SIZE_BYTES)

    @model_validator(mode="after")
    def _has_location(self) -> AssetCreate:
        if self.url is None and self.file_path is None:
            raise ValueError("give a url or a file_path")
        return self


class AssetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    lesson_id: uuid.UUID
    institution_id: uuid.UUID | None
    kind: AssetKind
    title: str
    language: str | None
    url: str | None
    file_path: str | None
    mime_type: str
    checksum_sha256: str
    size_bytes: int
    created_at: datetime
    updated_at: datetime


class AssetPage(BaseModel):
    items: list[AssetOut]
    next_cursor: str | None = None


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(min_length=1, max_length=64, pattern=SLUG)
    name_en: str = Field(min_length=1, max_length=100, pattern=PLAIN)
    name_sw: str | None = Field(default=None, max_length=100, pattern=PLAIN)
    institution_id: uuid.UUID | None = Field(
        default=None, description="Platform admins only: the owner, or null for a catalogue tag."
    )


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    slug: str
    name_en: str
    name_sw: str | None
    created_at: datetime
    updated_at: datetime


class TagPage(BaseModel):
    items: list[TagOut]
    next_cursor: str | None = None


class PrerequisiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    course_id: uuid.UUID
    required_course_id: uuid.UUID = Field(description="Must be completed before `course_id` can be started.")
    institution_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class PrerequisitePage(BaseModel):
    items: list[PrerequisiteOut]
    next_cursor: str | None = None
