"""Collecting tombstones: a deleted row is kept (as a version with ``deleted_at``) until every
node that must hear of the deletion has pulled past it, then removed for good.

The horizon of a feed is the lowest cursor any active node of that feed has reported; rows
deleted at or below it are known deleted everywhere that matters. A row something still
references is kept (its referents' deletion will free it on a later run). A client whose
cursor is older than the horizon (a phone left in a drawer, a node restored from an old
backup) may have missed a deletion, so it is told its cursor expired and copies afresh.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed.capture import CATALOG_SCOPE
from lms_domain.changefeed.models import OutboxEntry
from lms_domain.db import Base
from lms_domain.platform.models import EdgeNode, EdgeNodeStatus
from lms_domain.tenancy.models import Institution
from sync import state
from sync.policy import CATALOG, POLICIES, table

HORIZON_KEY = "gc-horizon:"


def _unreferenced(name: str) -> list[sa.ColumnElement[bool]]:
    target = table(name)
    conditions = []
    for other in Base.metadata.sorted_tables:
        for fk in other.foreign_keys:
            if fk.column.table is target:
                conditions.append(~sa.exists().where(fk.parent == target.c.id))
    return conditions


def _in_feed(name: str, feed: str) -> sa.ColumnElement[bool]:
    target = table(name)
    if feed == CATALOG_SCOPE:
        return target.c.institution_id.is_(None) if name in CATALOG else sa.false()
    if name == "institutions":
        return target.c.id == uuid.UUID(feed)
    return target.c.institution_id == uuid.UUID(feed)


async def collect(session: AsyncSession, *, feed: str | None, horizon: int | None, keep_pending: bool) -> int:
    """Remove tombstones of ``feed`` at or below ``horizon`` (a node: ``feed=None`` and
    ``horizon=None``, every tombstone it has no unpushed change for). Children first."""
    removed = 0
    for name in reversed([t.name for t in Base.metadata.sorted_tables]):
        if name not in POLICIES:
            continue
        target = table(name)
        where = [target.c.deleted_at.is_not(None), *_unreferenced(name)]
        if feed is not None:
            where.append(_in_feed(name, feed))
        if horizon is not None:
            where.append(target.c.change_seq <= horizon)
        if keep_pending:
            where.append(~sa.exists().where(OutboxEntry.table_name == name, OutboxEntry.row_id == target.c.id))
        result = await session.execute(sa.delete(target).where(*where))
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


@dataclass
class Collected:
    feeds: int = 0
    rows: int = 0
    feed_entries: int = 0


async def horizons(session: AsyncSession) -> dict[str, int]:
    """Per feed, the lowest cursor any active node reading it has reported."""
    active = sa.select(EdgeNode).where(EdgeNode.status == EdgeNodeStatus.ACTIVE)
    nodes = list(await session.scalars(active))
    out: dict[str, int] = {}
    institutions = set(await session.scalars(sa.select(Institution.id)))
    for institution in institutions:
        mine = [n.last_pull_seq for n in nodes if n.institution_id == institution]
        if mine:
            out[str(institution)] = min(mine)
    if nodes:
        out[CATALOG_SCOPE] = min(n.last_pull_catalog_seq for n in nodes)
    return out


async def collect_central(session: AsyncSession) -> Collected:
    """The central job: tombstones below each feed's horizon, and the feed entries they and
    every superseded change leave behind (the outbox stops growing with edits)."""
    done = Collected()
    for feed, horizon in (await horizons(session)).items():
        if horizon <= 0:
            continue
        done.feeds += 1
        done.rows += await collect(session, feed=feed, horizon=horizon, keep_pending=False)
        done.feed_entries += await _compact_feed(session, feed, horizon)
        previous = (await state.read(session, HORIZON_KEY + feed)).get("horizon", 0)
        await state.write(session, HORIZON_KEY + feed, {"horizon": max(previous, horizon)})
    return done


async def _compact_feed(session: AsyncSession, feed: str, horizon: int) -> int:
    """Entries at or below the horizon that no longer carry a row (superseded or collected)."""
    removed = 0
    for name in POLICIES:
        target = table(name)
        stale = sa.delete(OutboxEntry).where(
            OutboxEntry.scope == feed,
            OutboxEntry.seq <= horizon,
            OutboxEntry.table_name == name,
            ~sa.exists().where(target.c.id == OutboxEntry.row_id, target.c.change_seq == OutboxEntry.seq),
        )
        removed += int(getattr(await session.execute(stale), "rowcount", 0) or 0)
    return removed


async def expired(session: AsyncSession, feed: str, cursor: int) -> bool:
    """A cursor from before the horizon (and not a fresh copy) may have missed a deletion."""
    if cursor == 0:
        return False
    horizon = int((await state.read(session, HORIZON_KEY + feed)).get("horizon", 0))
    return cursor < horizon
