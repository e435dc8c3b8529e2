"""Quiz authoring schemas, and the two views of a quiz's questions.

Learners get ``LearnerQuestionOut``, whose choices have no ``is_correct`` field at all (not
even a null one), so no serialisation mistake can hand them the answers; only editors
get the answer key.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lms_domain.assessments.models import Question, QuestionChoice
from lms_domain.courses.content_schemas import MAX_POSITION, PLAIN

MIN_CHOICES = 2
MAX_CHOICES = 6
MAX_POINTS = 1000
MAX_ATTEMPTS_LIMIT = 1000


class QuizCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str = Field(min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    section_id: uuid.UUID | None = Field(default=None, description="A section of the same course, or null.")
    position: int = Field(default=0, ge=0, le=MAX_POSITION)
    pass_mark_percent: int = Field(default=50, ge=0, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT, description="Null: unlimited.")
    is_final: bool = Field(default=False, description="Passing it is needed for the certificate.")
    is_published: bool = Field(default=False, description="Learners only see published quizzes.")


class QuizUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title_en: str | None = Field(default=None, min_length=1, max_length=200, pattern=PLAIN)
    title_sw: str | None = Field(default=None, max_length=200, pattern=PLAIN)
    section_id: uuid.UUID | None = Field(default=None, description="Null detaches the quiz from its section.")
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)
    pass_mark_percent: int | None = Field(default=None, ge=0, le=100)
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT, description="Null: unlimited.")
    is_final: bool | None = None
    is_published: bool | None = None


class QuizOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    course_id: uuid.UUID
    section_id: uuid.UUID | None
    institution_id: uuid.UUID | None
    title_en: str
    title_sw: str | None
    position: int
    pass_mark_percent: int
    max_attempts: int | None
    is_final: bool
    is_published: bool
    created_at: datetime
    updated_at: datetime


class QuizPage(BaseModel):
    items: list[QuizOut]
    next_cursor: str | None = None


class ChoiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_en: str = Field(min_length=1, max_length=500, pattern=PLAIN)
    text_sw: str | None = Field(default=None, max_length=500, pattern=PLAIN)
    is_correct: bool = False
    position: int = Field(default=0, ge=0, le=MAX_POSITION)


class ChoiceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_en: str | None = Field(default=None, min_length=1, max_length=500, pattern=PLAIN)
    text_sw: str | None = Field(default=None, max_length=500, pattern=PLAIN)
    is_correct: bool | None = Field(default=None, description="True makes this the question's only correct choice.")
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)


class QuestionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_en: str = Field(min_length=1, max_length=5000, pattern=PLAIN)
    prompt_sw: str | None = Field(default=None, max_length=5000, pattern=PLAIN)
    position: int = Field(default=0, ge=0, le=MAX_POSITION)
    points: int = Field(default=1, ge=1, le=MAX_POINTS)
    choices: list[ChoiceCreate] | None = Field(
        default=None,
        min_length=MIN_CHOICES,
        max_length=MAX_CHOICES,
        description="Optional; if given, 2 to 6 choices with exactly one correct.",
    )

    @model_validator(mode="after")
    def _one_correct_choice(self) -> QuestionCreate:
        if self.choices is not None and sum(c.is_correct for c in self.choices) != 1:
            raise ValueError("exactly one choice must be correct")
        return self


class QuestionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt_en: str | None = Field(default=None, min_length=1, max_length=5000, pattern=PLAIN)
    prompt_sw: str | None = Field(default=None, max_length=5000, pattern=PLAIN)
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)
    points: int | None = Field(default=None, ge=1, le=MAX_POINTS)


class LearnerChoiceOut(BaseModel):
    """A choice as a learner sees it: deliberately without ``is_correct``."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    position: int
    text_en: str
    text_sw: str | None


class LearnerQuestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    quiz_id: uuid.UUID
    position: int
    prompt_en: str
    prompt_sw: str | None
    points: int
    choices: list[LearnerChoiceOut]

    @classmethod
    def of(cls, question: Question, choices: list[QuestionChoice]) -> LearnerQuestionOut:
        return cls(
            id=question.id,
            quiz_id=question.quiz_id,
            position=question.position,
            prompt_en=question.prompt_en,
            prompt_sw=question.prompt_sw,
            points=question.points,
            choices=[LearnerChoiceOut.model_validate(c) for c in choices],
        )


class LearnerQuestionPage(BaseModel):
    items: list[LearnerQuestionOut]
    next_cursor: str | None = None


class AuthorChoiceOut(BaseModel):
    """A choice as its authors see it, with the answer."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    question_id: uuid.UUID
    position: int
    text_en: str
    text_sw: str | None
    is_correct: bool
    created_at: datetime
    updated_at: datetime


class AuthorQuestionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    quiz_id: uuid.UUID
    position: int
    prompt_en: str
    prompt_sw: str | None
    points: int
    choices: list[AuthorChoiceOut]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, question: Question, choices: list[QuestionChoice]) -> AuthorQuestionOut:
        return cls(
            id=question.id,
            quiz_id=question.quiz_id,
            position=question.position,
            prompt_en=question.prompt_en,
            prompt_sw=question.prompt_sw,
            points=question.points,
            choices=[AuthorChoiceOut.model_validate(c) for c in choices],
            created_at=question.created_at,
            updated_at=question.updated_at,
        )


class AnswerKeyPage(BaseModel):
    items: list[AuthorQuestionOut]
    next_cursor: str | None = None
