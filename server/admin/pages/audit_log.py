"""Console pages: the audit log of admin actions."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from lms_domain.platform.audit import AuditEntryOut, AuditQuery, list_entries
from server.admin.menu import ADMINS
from server.admin.views import AdminRoutes, Page, csv_response, every_page

routes = AdminRoutes()


def _json(value: object) -> str:
    return "" if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


@routes.get("/admin/audit", roles=ADMINS)
async def show_audit_log(page: Page) -> web.StreamResponse:
    since, until = page.day_range()
    fields: dict[str, Any] = {n: page.q(n) for n in ("action", "target_type", "target_id", "cursor") if page.q(n)}
    query = page.validate(AuditQuery, {**fields, "since": since, "until": until})
    async with page.read() as session:
        if page.wants_csv:

            async def fetch(cursor: str | None) -> tuple[list[AuditEntryOut], str | None]:
                batch = query.model_copy(update={"cursor": cursor, "limit": 200})
                return await list_entries(session=session, actor=page.actor, query=batch)

            rows = await every_page(fetch)
            return csv_response(
                "audit-log.csv",
                ["at", "user", "action", "target_type", "target_id", "institution_id", "before", "after", "request_id"],
                (
                    [
                        e.at,
                        e.actor_username,
                        e.action,
                        e.target_type,
                        e.target_id,
                        e.institution_id,
                        e.before,
                        e.after,
                        e.request_id,
                    ]
                    for e in rows
                ),
            )
        items, next_cursor = await list_entries(session=session, actor=page.actor, query=query)
    return await page.render("admin/audit/list.html", {"items": items, "next_cursor": next_cursor})
