"""The audit log of admin actions: who did what, when, with the before and after.

An entry is written in the same unit of work as the change it describes, so there is never a
change without its entry nor an entry for a change that rolled back. Entries are scoped like
everything else: a school's admins read their school's entries, platform admins read all.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncSession

from lms_domain.access import Actor, tenant_filter
from lms_domain.pagination import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT, keyset_page
from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import User


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str | None = Field(default=None, max_length=64)
    target_type: str | None = Field(default=None, max_length=64)
    target_id: str | None = Field(default=None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = Field(default=None, pattern=CURSOR_PATTERN)
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)


class AuditEntryOut(BaseModel):
    id: uuid.UUID
    at: datetime
    institution_id: uuid.UUID | None
    actor_user_id: uuid.UUID | None
    actor_username: str | None
    action: str
    target_type: str
    target_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


def snapshot(value: BaseModel | Mapping[str, Any] | None, *, omit: Sequence[str] = ()) -> dict[str, Any] | None:
    """A JSON-safe copy of a record for the log; secrets (hashes, codes) are left out by name."""
    if value is None:
        return None
    raw = value.model_dump(mode="json") if isinstance(value, BaseModel) else dict(value)
    return {k: _json_safe(v) for k, v in raw.items() if k not in omit and not k.endswith("_hash")}


def _json_safe(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def record(
    *,
    session: AsyncSession,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str,
    institution_id: uuid.UUID | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    request_id: str | None = None,
    now: datetime,
) -> AuditLog:
    """Add one entry to the caller's unit of work (committed, or rolled back, with the change)."""
    entry = AuditLog(
        institution_id=institution_id if institution_id is not None else actor.institution_id,
        actor_user_id=actor.user_id,
        action=action[:64],
        target_type=target_type[:64],
        target_id=str(target_id)[:64],
        before=before,
        after=after,
        request_id=request_id,
        at=now,
    )
    session.add(entry)
    await session.flush()
    return entry


async def list_entries(
    *, session: AsyncSession, actor: Actor, query: AuditQuery
) -> tuple[list[AuditEntryOut], str | None]:
    """Newest first; admins only, each seeing their own school's entries."""
    actor.require_admin()
    stmt = sa.select(AuditLog, User.username).outerjoin(User, User.id == AuditLog.actor_user_id)
    stmt = tenant_filter(stmt, AuditLog.institution_id, actor)
    if query.action:
        stmt = stmt.where(AuditLog.action == query.action)
    if query.target_type:
        stmt = stmt.where(AuditLog.target_type == query.target_type)
    if query.target_id:
        stmt = stmt.where(AuditLog.target_id == query.target_id)
    if query.since:
        stmt = stmt.where(AuditLog.at >= query.since)
    if query.until:
        stmt = stmt.where(AuditLog.at < query.until)
    rows, cursor = await keyset_page(session, stmt, AuditLog, descending=True, cursor=query.cursor, limit=query.limit)
    items = [
        AuditEntryOut(
            id=entry.id,
            at=entry.at,
            institution_id=entry.institution_id,
            actor_user_id=entry.actor_user_id,
            actor_username=username,
            action=entry.action,
            target_type=entry.target_type,
            target_id=entry.target_id,
            before=entry.before,
            after=entry.after,
            request_id=entry.request_id,
        )
        for entry, username in rows
    ]
    return items, cursor
