"""Course structure and quizzes: sections, lessons, assets, tags, prerequisites, questions and choices."""

from __future__ import annotations

from server.api.registry import Api

api = Api(
    "content",
    description="Course structure and quizzes: sections, lessons, assets, tags, prerequisites, questions and choices.",
)
