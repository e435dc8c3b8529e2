"""Institutions (platform admins), users and learner profiles."""

from __future__ import annotations

from server.api.registry import Api

api = Api("people", description="Institutions (platform admins), users and learner profiles.")
