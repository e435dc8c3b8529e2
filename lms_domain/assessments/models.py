"""Quizzes, questions and choices; attempts, answers and certificates."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from lms_domain.db import Base, CatalogMixin, IdMixin, SyncMixin, TenantMixin
from lms_domain.types import enum_column


class Quiz(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "quizzes"

    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    section_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("sections.id", ondelete="RESTRICT"), default=None
    )
    title_en: Mapped[str] = mapped_column(sa.String(200))
    title_sw: Mapped[str | None] = mapped_column(sa.String(200), default=None)
    position: Mapped[int] = mapped_column(default=0)
    pass_mark_percent: Mapped[int] = mapped_column(default=50)
    max_attempts: Mapped[int | None] = mapped_column(default=None)  # None: unlimited
    is_final: Mapped[bool] = mapped_column(default=False)  # passing it is needed for the certificate
    is_published: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        sa.CheckConstraint("pass_mark_percent >= 0 AND pass_mark_percent <= 100", name="pass_mark_in_range"),
        sa.CheckConstraint("max_attempts IS NULL OR max_attempts > 0", name="max_attempts_positive"),
    )


class Question(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "questions"

    quiz_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("quizzes.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    prompt_en: Mapped[str] = mapped_column(sa.Text)
    prompt_sw: Mapped[str | None] = mapped_column(sa.Text, default=None)
    points: Mapped[int] = mapped_column(default=1)

    __table_args__ = (sa.CheckConstraint("points > 0", name="points_positive"),)


class QuestionChoice(Base, IdMixin, SyncMixin, CatalogMixin):
    __tablename__ = "question_choices"

    question_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("questions.id", ondelete="RESTRICT"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    text_en: Mapped[str] = mapped_column(sa.String(500))
    text_sw: Mapped[str | None] = mapped_column(sa.String(500), default=None)
    is_correct: Mapped[bool] = mapped_column(default=False)


class Channel(StrEnum):
    WEB = "web"
    APP = "app"
    USSD = "ussd"
    SMS = "sms"
    EDGE = "edge"


class AttemptStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    SUBMITTED = "submitted"
    ABANDONED = "abandoned"


class Attempt(Base, IdMixin, SyncMixin, TenantMixin):
    """Append-only with a random UUIDv7, so attempts made on two nodes never conflict."""

    __tablename__ = "attempts"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    quiz_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("quizzes.id", ondelete="RESTRICT"), index=True)
    number: Mapped[int]  # 1-based, per learner and quiz, as counted where it was started
    status: Mapped[AttemptStatus] = mapped_column(
        enum_column(AttemptStatus, "status"), default=AttemptStatus.IN_PROGRESS
    )
    channel: Mapped[Channel] = mapped_column(enum_column(Channel, "channel"), default=Channel.WEB)
    started_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    score_points: Mapped[int | None] = mapped_column(default=None)
    max_points: Mapped[int | None] = mapped_column(default=None)
    score_percent: Mapped[int | None] = mapped_column(default=None)
    passed: Mapped[bool | None] = mapped_column(default=None)

    __table_args__ = (
        sa.Index("ix_attempts_learner_quiz", "learner_id", "quiz_id"),
        sa.CheckConstraint("number > 0", name="number_positive"),
        sa.CheckConstraint("score_points IS NULL OR score_points >= 0", name="score_non_negative"),
        sa.CheckConstraint(
            "score_percent IS NULL OR (score_percent >= 0 AND score_percent <= 100)", name="percent_in_range"
        ),
    )


class Answer(Base, IdMixin, SyncMixin, TenantMixin):
    """Id is ``natural_id('answer', attempt_id, question_id)``: re-answering before
    submitting replaces the choice; only the attempt's own node ever writes it."""

    __tablename__ = "answers"

    attempt_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("attempts.id", ondelete="RESTRICT"))
    question_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("questions.id", ondelete="RESTRICT"), index=True)
    choice_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("question_choices.id", ondelete="RESTRICT"), default=None
    )
    is_correct: Mapped[bool | None] = mapped_column(default=None)  # set when graded, at submit
    answered_at: Mapped[datetime]

    __table_args__ = (sa.UniqueConstraint("attempt_id", "question_id"),)


class Certificate(Base, IdMixin, SyncMixin, TenantMixin):
    """Issued once per learner and course: id ``natural_id('certificate', learner, course)``
    and a verification code derived from it, so two nodes issuing offline agree."""

    __tablename__ = "certificates"

    learner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("learners.id", ondelete="RESTRICT"))
    course_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("courses.id", ondelete="RESTRICT"), index=True)
    final_attempt_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("attempts.id", ondelete="RESTRICT"), default=None
    )
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    learner_name: Mapped[str] = mapped_column(sa.String(120))  # as printed, frozen at issue
    course_title: Mapped[str] = mapped_column(sa.String(200))
    score_percent: Mapped[int] = mapped_column(default=0)
    issued_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (sa.UniqueConstraint("learner_id", "course_id"),)
