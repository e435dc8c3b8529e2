"""Console pages: the dashboard."""

from __future__ import annotations

from aiohttp import web

from lms_domain.platform.dashboard import dashboard
from server.admin.views import AdminRoutes, Page

routes = AdminRoutes()


@routes.get("/admin")
async def show_dashboard(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        figures = await dashboard(session=session, actor=page.actor, now=page.clock.now())
    return await page.render("admin/dashboard.html", {"d": figures})
