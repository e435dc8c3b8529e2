"""Edge nodes: registered by an admin, enrolled once with a code, revoked for good.

A node's identity is enrolled, never derived (a MAC or a hostname changes with the box):
the admin gets a one-time code, the node proves it holds the code once and leaves its
public key; from then on it proves itself by signing the server's nonces. Revocation is a
state the central server checks on every sync request, so it takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor
from lms_domain.changefeed.capture import CATALOG_SCOPE
from lms_domain.changefeed.models import SyncConflict, SyncCounter, SyncRejection
from lms_domain.db import lock
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from lms_domain.ids import crockford_code
from lms_domain.platform.models import EdgeNode, EdgeNodeStatus
from lms_domain.tenancy.models import Institution

CODE_LIFETIME = timedelta(days=7)
CODE_LENGTH = 16  # 80 bits: guessing is hopeless, typing it is a minute


class EdgeNodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, examples=["Kibera Primary, staff room"])
    institution_id: uuid.UUID | None = Field(
        default=None, description="Platform admins name the school; a school admin registers their own."
    )


class EdgeNodeOut(BaseModel):
    id: uuid.UUID
    institution_id: uuid.UUID
    name: str
    status: EdgeNodeStatus
    epoch: int
    last_sync_at: datetime | None
    last_pull_seq: int
    last_pull_catalog_seq: int
    last_push_seq: int
    rows_pushed: int
    rows_rejected: int
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, node: EdgeNode) -> EdgeNodeOut:
        return cls.model_validate(node, from_attributes=True)


class EdgeNodeRegistered(EdgeNodeOut):
    enrollment_code: str = Field(
        description="Shown once. Run `somo edge init --central URL --code CODE` at the school."
    )
    code_expires_at: datetime


class EdgeNodePage(BaseModel):
    items: list[EdgeNodeOut]


def normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def code_hash(code: str) -> str:
    # A plain SHA-256 is enough: the code has 80 random bits, so there is nothing to brute force.
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def _format(code: str) -> str:
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def _scope_institution(actor: Actor, requested: uuid.UUID | None) -> uuid.UUID:
    actor.require_admin()
    if actor.is_platform_admin:
        if requested is None:
            raise InvalidInput("name the institution the node serves", code="institution_required")
        return requested
    assert actor.institution_id is not None
    if requested not in (None, actor.institution_id):
        raise NotFound("no institution with that id")
    return actor.institution_id


async def register(*, session: AsyncSession, actor: Actor, data: EdgeNodeIn, now: datetime) -> EdgeNodeRegistered:
    institution_id = _scope_institution(actor, data.institution_id)
    institution = await session.get(Institution, institution_id)
    if institution is None or institution.deleted_at is not None:
        raise NotFound("no institution with that id")
    code = crockford_code(secrets.token_bytes(32), CODE_LENGTH)
    node = EdgeNode(
        institution_id=institution_id,
        name=data.name,
        status=EdgeNodeStatus.PENDING,
        enrollment_code_hash=code_hash(code),
        created_at=now,
        updated_at=now,
    )
    session.add(node)
    await session.flush()
    out = EdgeNodeOut.of(node).model_dump()
    return EdgeNodeRegistered(**out, enrollment_code=_format(code), code_expires_at=now + CODE_LIFETIME)


async def _visible(session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> EdgeNode:
    actor.require_admin()
    node = await lock(session, EdgeNode, node_id)
    if node is None or (not actor.is_platform_admin and node.institution_id != actor.institution_id):
        raise NotFound("no edge node with that id")
    return node


async def revoke(*, session: AsyncSession, actor: Actor, node_id: uuid.UUID, now: datetime) -> EdgeNodeOut:
    node = await _visible(session, actor, node_id)
    if node.status is not EdgeNodeStatus.REVOKED:
        node.status = EdgeNodeStatus.REVOKED
        node.revoked_at = now
        node.enrollment_code_hash = None
        node.updated_at = now
        await session.flush()
    return EdgeNodeOut.of(node)


async def get(*, session: AsyncSession, actor: Actor, node_id: uuid.UUID) -> EdgeNodeOut:
    actor.require_admin()
    node = await session.get(EdgeNode, node_id)
    if node is None or (not actor.is_platform_admin and node.institution_id != actor.institution_id):
        raise NotFound("no edge node with that id")
    return EdgeNodeOut.of(node)


async def list_nodes(*, session: AsyncSession, actor: Actor) -> EdgeNodePage:
    actor.require_admin()
    stmt = sa.select(EdgeNode).order_by(EdgeNode.created_at, EdgeNode.id)
    if not actor.is_platform_admin:
        stmt = stmt.where(EdgeNode.institution_id == actor.institution_id)
    return EdgeNodePage(items=[EdgeNodeOut.of(n) for n in await session.scalars(stmt)])


@dataclass(frozen=True)
class Enrolled:
    node_id: uuid.UUID
    institution_id: uuid.UUID
    epoch: int


async def enroll(*, session: AsyncSession, code: str, public_key: str, now: datetime) -> Enrolled:
    """Use the one-time code: the node becomes active with this public key; the code is spent."""
    node = await session.scalar(
        sa.select(EdgeNode).where(EdgeNode.enrollment_code_hash == code_hash(code)).with_for_update()
    )
    if node is None or node.status is not EdgeNodeStatus.PENDING or now > node.created_at + CODE_LIFETIME:
        raise Unauthenticated("the enrollment code is unknown, used or expired", code="invalid_enrollment_code")
    node.status = EdgeNodeStatus.ACTIVE
    node.public_key = public_key
    node.enrollment_code_hash = None
    node.updated_at = now
    await session.flush()
    return Enrolled(node.id, node.institution_id, node.epoch)


async def active_node(session: AsyncSession, node_id: uuid.UUID, *, for_update: bool = False) -> EdgeNode:
    """The node behind a sync credential, refused unless it is active now (revocation bites
    on the very next request, whatever token the node still holds)."""
    stmt = sa.select(EdgeNode).where(EdgeNode.id == node_id)
    if for_update:
        stmt = stmt.with_for_update()
    node = await session.scalar(stmt)
    if node is None or node.status is not EdgeNodeStatus.ACTIVE:
        raise PermissionDenied("this edge node is revoked or unknown", code="node_revoked")
    return node


async def new_epoch(session: AsyncSession, node_id: uuid.UUID, now: datetime) -> int:
    """A restored or cloned node starts a new numbering; its old acknowledgements no longer apply."""
    node = await active_node(session, node_id, for_update=True)
    node.epoch += 1
    node.last_push_seq = 0
    node.last_push_from = 0
    node.last_push_digest = ""
    node.updated_at = now
    await session.flush()
    return node.epoch


def check_push_range(node: EdgeNode, *, epoch: int, from_seq: int, to_seq: int, digest: str) -> bool:
    """True for a replay of the batch last acknowledged; raises for numbers already used by
    other changes (a restored or cloned database); False for a new batch."""
    if epoch != node.epoch:
        raise Conflict(
            f"this node is at epoch {node.epoch}; the batch says {epoch}", code="epoch_mismatch", epoch=node.epoch
        )
    if from_seq > to_seq or from_seq < 1:
        raise InvalidInput("from_seq must be 1 or more and at most to_seq", code="malformed_batch")
    if to_seq <= node.last_push_seq or from_seq <= node.last_push_seq:
        if (from_seq, to_seq, digest) == (node.last_push_from, node.last_push_seq, node.last_push_digest):
            return True
        raise Conflict(
            "these change numbers were already acknowledged for other changes: the node's database "
            "was restored from a backup or copied; start a new epoch",
            code="node_restored",
            acked=node.last_push_seq,
        )
    return False


class NodeConflict(BaseModel):
    id: uuid.UUID
    table_name: str
    row_id: uuid.UUID
    won: bool = Field(description="Whether this node's version won the last-writer-wins merge.")
    loser: dict[str, object]
    created_at: datetime


class NodeRejection(BaseModel):
    id: uuid.UUID
    table_name: str
    row_id: uuid.UUID | None
    reason: str
    detail: str
    created_at: datetime


class EdgeNodeStatusOut(BaseModel):
    node: EdgeNodeOut
    pending_down: int = Field(description="Changes of its school the node has not pulled yet.")
    pending_catalog: int = Field(description="Catalogue changes the node has not pulled yet.")
    conflicts: list[NodeConflict]
    rejections: list[NodeRejection]


async def status(*, session: AsyncSession, actor: Actor, node_id: uuid.UUID, limit: int = 50) -> EdgeNodeStatusOut:
    """How far behind a node is, and what its pushes ran into (latest conflicts and rejections).

    What the node holds but has not pushed is only known to the node itself; between syncs the
    central server can tell only what the node has not pulled."""
    node = await get(session=session, actor=actor, node_id=node_id)
    counters = dict(
        (
            await session.execute(
                sa.select(SyncCounter.scope, SyncCounter.value).where(
                    SyncCounter.scope.in_((str(node.institution_id), CATALOG_SCOPE))
                )
            )
        ).all()
    )
    conflicts = await session.scalars(
        sa.select(SyncConflict)
        .where(sa.or_(SyncConflict.loser_node_id == node.id, SyncConflict.winner_node_id == node.id))
        .order_by(SyncConflict.id.desc())
        .limit(limit)
    )
    rejections = await session.scalars(
        sa.select(SyncRejection).where(SyncRejection.node_id == node.id).order_by(SyncRejection.id.desc()).limit(limit)
    )
    return EdgeNodeStatusOut(
        node=node,
        pending_down=max(0, int(counters.get(str(node.institution_id), 0)) - node.last_pull_seq),
        pending_catalog=max(0, int(counters.get(CATALOG_SCOPE, 0)) - node.last_pull_catalog_seq),
        conflicts=[
            NodeConflict(
                id=c.id,
                table_name=c.table_name,
                row_id=c.row_id,
                won=c.winner_node_id == node.id,
                loser=c.loser,
                created_at=c.created_at,
            )
            for c in conflicts
        ],
        rejections=[
            NodeRejection(
                id=r.id,
                table_name=r.table_name,
                row_id=r.row_id,
                reason=r.reason,
                detail=r.detail,
                created_at=r.created_at,
            )
            for r in rejections
        ],
    )
