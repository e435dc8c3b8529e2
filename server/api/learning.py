"""Enrollments, lesson progress, quiz attempts and certificates."""

from __future__ import annotations

from server.api.registry import Api

api = Api("learning", description="Enrollments, lesson progress, quiz attempts and certificates.")
