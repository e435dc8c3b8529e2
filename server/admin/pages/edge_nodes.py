"""Console pages: edge nodes (register one and read its one-time code, revoke one, and see
how far each has synced)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from aiohttp import web

from lms_domain.platform import edge_nodes
from lms_domain.platform.edge_nodes import EdgeNodeIn
from lms_domain.tenancy import admin as tenancy
from lms_domain.tenancy.models import Institution
from lms_domain.tenancy.schemas import InstitutionListQuery
from server.admin.menu import ADMINS
from server.admin.views import AdminRoutes, Page, csv_response
from server.keys import settings_key

routes = AdminRoutes()


@routes.get("/admin/edge-nodes", roles=ADMINS)
async def list_nodes(page: Page) -> web.StreamResponse:
    status_filter = page.q("status")
    async with page.read() as session:
        nodes = (await edge_nodes.list_nodes(session=session, actor=page.actor)).items
        schools: Sequence[Institution] = []
        if page.actor.is_platform_admin:
            schools, _ = await tenancy.list_institutions(
                session=session, actor=page.actor, query=InstitutionListQuery(limit=200)
            )
    if status_filter:
        nodes = [n for n in nodes if n.status.value == status_filter]
    text = page.q("q").lower()
    if text:
        nodes = [n for n in nodes if text in n.name.lower()]
    if page.wants_csv:
        return csv_response(
            "edge-nodes.csv",
            ["id", "institution_id", "name", "status", "last_sync_at", "last_pull_seq", "rows_pushed", "rows_rejected"],
            (
                [
                    n.id,
                    n.institution_id,
                    n.name,
                    n.status.value,
                    n.last_sync_at,
                    n.last_pull_seq,
                    n.rows_pushed,
                    n.rows_rejected,
                ]
                for n in nodes
            ),
        )
    return await page.render("admin/edge_nodes/list.html", {"nodes": nodes, "schools": schools})


@routes.post("/admin/edge-nodes", roles=ADMINS)
async def register_node(page: Page) -> web.StreamResponse:
    raw_school = str(page.form.get("institution_id", "")).strip()
    data = page.validate(
        EdgeNodeIn,
        {"name": str(page.form.get("name", "")).strip(), "institution_id": raw_school or None},
    )
    async with page.uow() as session:
        registered = await edge_nodes.register(session=session, actor=page.actor, data=data, now=page.clock.now())
        await page.audit(
            session,
            action="edge_node.register",
            target_type="edge_node",
            target_id=registered.id,
            institution_id=registered.institution_id,
            after=registered.model_dump(exclude={"enrollment_code"}),
        )
    # The code is shown on this response only: it is never stored in clear, so a reload
    # cannot show it again (register a new node if it is lost).
    central_url = page.app[settings_key].http.public_url
    return await page.render(
        "admin/edge_nodes/registered.html", {"node": registered, "central_url": central_url}, status=201
    )


@routes.get("/admin/edge-nodes/{node_id}", roles=ADMINS)
async def show_node(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        state = await edge_nodes.status(session=session, actor=page.actor, node_id=page.path_uuid("node_id"))
    return await page.render("admin/edge_nodes/detail.html", {"s": state})


@routes.post("/admin/edge-nodes/{node_id}/revoke", roles=ADMINS)
async def revoke_node(page: Page) -> web.StreamResponse:
    node_id: uuid.UUID = page.path_uuid("node_id")
    async with page.uow() as session:
        before = await edge_nodes.get(session=session, actor=page.actor, node_id=node_id)
        after = await edge_nodes.revoke(session=session, actor=page.actor, node_id=node_id, now=page.clock.now())
        await page.audit(
            session,
            action="edge_node.revoke",
            target_type="edge_node",
            target_id=node_id,
            institution_id=after.institution_id,
            before=before,
            after=after,
        )
    page.flash(page._("The edge node is revoked: its next sync request will be refused."))
    return await page.redirect(f"/admin/edge-nodes/{node_id}")
