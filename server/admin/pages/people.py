"""Console pages: people."""

from __future__ import annotations

from server.admin.views import AdminRoutes

routes = AdminRoutes()
