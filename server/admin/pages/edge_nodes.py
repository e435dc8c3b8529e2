"""Console pages: edge nodes."""

from __future__ import annotations

from server.admin.views import AdminRoutes

routes = AdminRoutes()
