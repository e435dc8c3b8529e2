"""Courses and their structure, plus enrollments and lesson progress.

Catalogue rows (``institution_id`` NULL) are shared by every institution; an
institution may also author its own. Learner-facing text has English and Swahili.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, CatalogMixin, IdMixin, SyncMixin, TenantMixin
from lms_domain.types import enum_column


class CourseAccess(StrEnum):
    FREE = "free"
    PAID = "paid"  # needs an active entitlement to enroll


class Course(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "courses"

    slug: Mapped[str] = mapped_column(sa.String(120))
    title_en: Mapped[str] = mapped_column(sa.String(200))
    title_sw: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    summary_en: Mapped[str] = mapped_column(sa.Text, default="")
    summary_sw: Mapped[str | None] = mapped_column(sa.Text, default=None)
    access: Mapped[CourseAccess] = mapped_column(enum_column(CourseAccess, "access"), default=CourseAccess.FREE)
    is_published: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"), default=None
    )

    __table_args__ = (sa.Index("ix_courses_institution_slug", "institution_id", "slug"),)


class Section(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "sections"

    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    title_en: Mapped[str] = mapped_column(sa.String(200))
    title_sw: Mapped[str | None] = mapped_column(sa.String(200), default=None)

    __table_args__ = (sa.CheckConstraint("position >= 0", name="position_non_negative"),)


class Lesson(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "lessons"

    section_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("sections.id", ondelete="RESTRICT"), index=True)
    # Denormalised so completion per course is one indexed query, on the edge too.
    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    title_en: Mapped[str] = mapped_column(sa.String(200))
    title_sw: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    body_en: Mapped[str] = mapped_column(sa.Text, default="")
    body_sw: Mapped[str | None] = mapped_column(sa.Text, default=None)
    duration_minutes: Mapped[int] = mapped_column(default=0)

    __table_args__ = (
        sa.CheckConstraint("position >= 0", name="position_non_negative"),
        sa.CheckConstraint("duration_minutes >= 0", name="duration_non_negative"),
    )


class AssetKind(StrEnum):
    VIDEO = "video"
    AUDIO = "audio"
    PDF = "pdf"
    IMAGE = "image"
    HTML = "html"
    OTHER = "other"


class Asset(Base, IdMixin, SyncMixin, CatalogMixin):
    """A lesson file. Checksum and size let an edge cache it and verify the copy."""

    __tablename__ = "assets"

    lesson_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("lessons.id", ondelete="RESTRICT"), index=True)
    kind: Mapped[AssetKind] = mapped_column(enum_column(AssetKind, "kind"))
    title: Mapped[str] = mapped_column(sa.String(200), default="")
    language: Mapped[str | None] = mapped_column(sa.String(2), default=None)
    url: Mapped[str | None] = mapped_column(sa.String(2048), default=None)
    file_path: Mapped[str | None] = mapped_column(sa.String(1024), default=None)
    mime_type: Mapped[str] = mapped_column(sa.String(127), default="application/octet-stream")
    checksum_sha256: Mapped[str] = mapped_column(sa.String(64))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.CheckConstraint("url IS NOT NULL OR file_path IS NOT NULL", name="has_location"),
        sa.CheckConstraint("size_bytes >= 0", name="size_non_negative"),
        sa.CheckConstraint("length(checksum_sha256) = 64", name="checksum_is_sha256"),
    )


class Tag(Base, IdMixin, SyncMixin, CatalogMixin):
    """Id is ``natural_id('tag', institution_id, slug)``: unique even where NULL would not be."""

    __tablename__ = "tags"

    slug: Mapped[str] = mapped_column(sa.String(64))
    name_en: Mapped[str] = mapped_column(sa.String(100))
    name_sw: Mapped[str | None] = mapped_column(sa.String(100), default=None)


class CourseTag(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "course_tags"

    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"))
    tag_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("tags.id", ondelete="RESTRICT"), index=True)

    __table_args__ = (sa.UniqueConstraint("course_id", "tag_id"),)


class Prerequisite(Base, IdMixin, SyncMixin, CatalogMixin):
    """``course_id`` may only be started once ``required_course_id`` is completed."""

    __tablename__ = "prerequisites"

    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"))
    required_course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)

    __table_args__ = (
        sa.UniqueConstraint("course_id", "required_course_id"),
        sa.CheckConstraint("course_id <> required_course_id", name="not_self"),
    )


class EnrollmentStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


class Enrollment(Base, IdMixin, SyncMixin, TenantMixin):
    """Id is ``natural_id('enrollment', learner_id, course_id)``."""

    __tablename__ = "enrollments"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    status: Mapped[EnrollmentStatus] = mapped_column(
        enum_column(EnrollmentStatus, "status"), default=EnrollmentStatus.ACTIVE
    )
    enrolled_at: Mapped[datetime]
    completed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (sa.UniqueConstraint("learner_id", "course_id"),)


class LessonProgress(Base, IdMixin, SyncMixin, TenantMixin):
    """Id is ``natural_id('lesson_progress', learner_id, lesson_id)``.

    Merges monotonically: percent only rises and the earliest completion time wins, so
    two nodes recording progress offline converge without a conflict.
    """

    __tablename__ = "lesson_progress"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    lesson_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("lessons.id", ondelete="RESTRICT"), index=True)
    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    percent: Mapped[int] = mapped_column(default=0)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    completed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (
        sa.UniqueConstraint("learner_id", "lesson_id"),
        sa.CheckConstraint("percent >= 0 AND percent <= 100", name="percent_in_range"),
    )
