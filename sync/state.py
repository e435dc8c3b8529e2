"""A node's own bookkeeping in its ``sync_state`` table: identity, cursor, push watermark.

Kept in the node's database rather than a file beside it, so the cursor and the rows it
describes are always committed together (a batch and its cursor move in one transaction).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.changefeed.models import SyncState
from lms_domain.db import dialect_insert
from sync.protocol import Cursor

IDENTITY = "identity"
CURSOR = "cursor"
PUSH = "push"
STATUS = "status"
# Set while a fresh copy is under way (rows the node pushed itself were dropped, so it must
# not ask to be spared its own changes, see ``sync.feed``); cleared when the copy completes.
RECOPY = "recopy"


async def read(session: AsyncSession, key: str) -> dict[str, Any]:
    value = await session.scalar(sa.select(SyncState.value).where(SyncState.key == key))
    return dict(value or {})


async def write(session: AsyncSession, key: str, value: dict[str, Any]) -> None:
    stmt = dialect_insert(session, SyncState).values(key=key, value=value)
    await session.execute(stmt.on_conflict_do_update(index_elements=[SyncState.key], set_={"value": value}))


async def update(session: AsyncSession, key: str, **changes: Any) -> dict[str, Any]:
    value = await read(session, key)
    value.update(changes)
    await write(session, key, value)
    return value


@dataclass(frozen=True)
class Identity:
    """Who this node is, as enrolled: fixed at ``somo edge init``, except the epoch."""

    node_id: uuid.UUID
    institution_id: uuid.UUID
    central_url: str
    epoch: int = 0

    def dump(self) -> dict[str, Any]:
        return {
            "node_id": str(self.node_id),
            "institution_id": str(self.institution_id),
            "central_url": self.central_url,
            "epoch": self.epoch,
        }

    @classmethod
    def load(cls, value: dict[str, Any]) -> Identity | None:
        if not value:
            return None
        return cls(
            uuid.UUID(value["node_id"]), uuid.UUID(value["institution_id"]), value["central_url"], value["epoch"]
        )


async def identity(session: AsyncSession) -> Identity | None:
    return Identity.load(await read(session, IDENTITY))


async def cursor(session: AsyncSession) -> Cursor:
    return Cursor.parse((await read(session, CURSOR)).get("value"))
