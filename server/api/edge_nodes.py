"""Edge nodes: an admin registers a school's node (and reads its one-time code), lists
them with their sync state, and revokes one for good."""

from __future__ import annotations

from typing import Any

from lms_domain.platform import edge_nodes
from lms_domain.platform.edge_nodes import EdgeNodeIn, EdgeNodeOut, EdgeNodePage, EdgeNodeRegistered
from lms_domain.tenancy.models import Role
from server.api.registry import Api, Call

api = Api(
    "edge nodes",
    description="School servers that keep learning going offline and sync with the central server.",
)

ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})


@api.post(
    "/edge-nodes",
    summary="Register an edge node",
    body=EdgeNodeIn,
    response=EdgeNodeRegistered,
    status=201,
    auth=ADMINS,
    extra_responses={404: "`institution_id` names another school (only platform admins choose)."},
)
async def register_edge_node(call: Call[EdgeNodeIn, Any]) -> EdgeNodeRegistered:
    """The answer holds the node's one-time enrollment code, shown this once and valid for
    7 days: run `somo edge init --central URL --code CODE` on the school's server."""
    async with call.uow() as session:
        return await edge_nodes.register(session=session, actor=call.actor, data=call.body, now=call.clock.now())


@api.get("/edge-nodes", summary="List edge nodes", response=EdgeNodePage, auth=ADMINS)
async def list_edge_nodes(call: Call[Any, Any]) -> EdgeNodePage:
    """Each node with its last sync, how far it has pulled and pushed, and rejected rows."""
    async with call.read() as session:
        return await edge_nodes.list_nodes(session=session, actor=call.actor)


@api.get("/edge-nodes/{node_id}", summary="An edge node", response=EdgeNodeOut, auth=ADMINS)
async def get_edge_node(call: Call[Any, Any]) -> EdgeNodeOut:
    async with call.read() as session:
        return await edge_nodes.get(session=session, actor=call.actor, node_id=call.path_uuid("node_id"))


@api.delete("/edge-nodes/{node_id}", summary="Revoke an edge node", status=204, auth=ADMINS)
async def revoke_edge_node(call: Call[Any, Any]) -> None:
    """Refused on its very next sync request, whatever token it still holds. Not reversible:
    register a new node to replace it."""
    async with call.uow() as session:
        await edge_nodes.revoke(
            session=session, actor=call.actor, node_id=call.path_uuid("node_id"), now=call.clock.now()
        )
