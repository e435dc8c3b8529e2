"""Properties of every console route, so a page added later cannot forget them: each GET page
renders for every staff role (or refuses with 403, never a 500), and each POST refuses a form
sent without its CSRF token before doing anything."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa

from lms_domain.platform.models import AuditLog
from server.admin.setup import all_routes
from tests.admin.conftest import Console


def _routes(method: str) -> list[str]:
    return sorted({path for area in all_routes() for m, path, _h, _r in area.routes if m == method})


async def test_every_list_page_renders_for_every_staff_role(console: Console) -> None:
    pages = [p for p in _routes("GET") if "{" not in p]
    assert len(pages) >= 10
    for username in (console.root, console.a.admin, console.a.instructor):
        client = await console.as_user(username)
        for path in pages:
            status, html = await client.get(path)
            # 422: a page that needs a choice in its query string (an editor) says so.
            assert status in (200, 403, 422), f"{username} {path}: {status}"
            if status == 200:
                assert "<h1>" in html, path
            status, _ = await client.get(path + "?format=csv")
            assert status in (200, 403, 422), f"{username} {path}?format=csv: {status}"


async def test_detail_pages_of_unknown_ids_are_404(console: Console) -> None:
    client = await console.as_user(console.root)
    for path in [p for p in _routes("GET") if "{" in p]:
        status, _ = await client.get(re.sub(r"{\w+}", str(uuid.uuid4()), path))
        assert status == 404, path
        status, _ = await client.get(re.sub(r"{\w+}", "not-an-id", path))
        assert status == 404, path


async def test_every_form_needs_its_csrf_token(console: Console) -> None:
    forms = _routes("POST")
    assert len(forms) >= 8
    client = await console.as_user(console.root)
    for path in forms:
        target = re.sub(r"{\w+}", str(console.a.learner.id), path)
        response = await client.post(target, {"name": "x", "pin": "1234", "pin_again": "1234"}, csrf=False)
        assert response.status == 403, path
    async with console.makers() as session:
        changes = sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action.not_like("auth.%"))
        assert await session.scalar(changes) == 0
