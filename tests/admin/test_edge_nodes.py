"""Console: edge nodes (register with a one-time code, revoke, sync state)."""

from __future__ import annotations

import re

import sqlalchemy as sa

from lms_domain.platform.edge_nodes import code_hash, normalise_code
from lms_domain.platform.models import AuditLog, EdgeNode, EdgeNodeStatus
from tests.admin.conftest import Console


async def test_register_shows_the_code_once_and_stores_only_its_hash(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    response = await admin.post("/admin/edge-nodes", {"name": "Staff room"})
    assert response.status == 201
    html = await response.text()
    code = re.search(r'id="enrollment-code">([^<]+)<', html)
    assert code
    async with console.makers() as session:
        node = await session.scalar(sa.select(EdgeNode).where(EdgeNode.name == "Staff room"))
        assert node is not None and node.institution_id == console.a.institution.id
        assert node.status is EdgeNodeStatus.PENDING
        assert node.enrollment_code_hash == code_hash(normalise_code(code.group(1)))
        entry = await session.scalar(sa.select(AuditLog).where(AuditLog.action == "edge_node.register"))
        assert entry is not None and code.group(1) not in str(entry.after)
    status, html = await admin.get(f"/admin/edge-nodes/{node.id}")
    assert status == 200 and code.group(1) not in html


async def test_revoke_is_final_and_audited(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    await admin.post("/admin/edge-nodes", {"name": "Lab"})
    async with console.makers() as session:
        node = await session.scalar(sa.select(EdgeNode).where(EdgeNode.name == "Lab"))
        assert node is not None
    response = await admin.post(f"/admin/edge-nodes/{node.id}/revoke")
    assert response.status == 303
    async with console.makers() as session:
        revoked = await session.get(EdgeNode, node.id)
        assert revoked is not None and revoked.status is EdgeNodeStatus.REVOKED and revoked.revoked_at is not None
        entry = await session.scalar(sa.select(AuditLog).where(AuditLog.action == "edge_node.revoke"))
        assert entry is not None and entry.before and entry.before["status"] == "pending"
        assert entry.after and entry.after["status"] == "revoked"


async def test_another_school_cannot_see_or_revoke_a_node(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    await admin.post("/admin/edge-nodes", {"name": "Library node"})
    async with console.makers() as session:
        node = await session.scalar(sa.select(EdgeNode).where(EdgeNode.name == "Library node"))
        assert node is not None
    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin/edge-nodes")
    assert "Library node" not in html
    status, text = await admin_b.get("/admin/edge-nodes?format=csv")
    assert "Library node" not in text
    assert (await admin_b.get(f"/admin/edge-nodes/{node.id}"))[0] == 404
    assert (await admin_b.post(f"/admin/edge-nodes/{node.id}/revoke")).status == 404
    # School B cannot register a node for school A either.
    response = await admin_b.post(
        "/admin/edge-nodes", {"name": "Planted", "institution_id": str(console.a.institution.id)}
    )
    assert response.status == 404
    async with console.makers() as session:
        still = await session.get(EdgeNode, node.id)
        assert still is not None and still.status is EdgeNodeStatus.PENDING
        assert await session.scalar(sa.select(EdgeNode).where(EdgeNode.name == "Planted")) is None


async def test_an_empty_name_is_refused(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    response = await admin.post("/admin/edge-nodes", {"name": "  "})
    assert response.status == 422
    async with console.makers() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(EdgeNode)) == 0
