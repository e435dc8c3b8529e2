"""The REST API: one module per resource group, each an ``Api`` of declared operations."""

from __future__ import annotations

from server.api import auth, commerce, content, courses, edge_nodes, learning, notifications, payments, people
from server.api.registry import Api

PREFIX = "/api/v1"


def all_apis() -> list[Api]:
    """Every operation group, in the order the docs list them. A module may expose more
    than one group (``public_api`` for pages outside /api/v1)."""
    groups: list[Api] = []
    for module in (auth, people, courses, content, learning, commerce, payments, notifications, edge_nodes):
        groups.append(module.api)
        public = getattr(module, "public_api", None)
        if isinstance(public, Api):
            groups.append(public)
    return groups
