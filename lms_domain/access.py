"""Who is acting, and the tenant scope every service applies to its queries.

Scoping lives here, in the domain, so a handler that forgets a filter cannot leak another
school's rows: services take an ``Actor`` and filter with these helpers. Rows of another
institution answer ``NotFound``, never ``PermissionDenied``, so their existence never leaks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa

from lms_domain.errors import NotFound, PermissionDenied
from lms_domain.tenancy.models import Role

STAFF_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN, Role.INSTRUCTOR})
ADMIN_ROLES = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})

S = TypeVar("S", bound=sa.Select[*tuple[Any, ...]])


@dataclass(frozen=True)
class Actor:
    user_id: uuid.UUID | None
    role: Role
    institution_id: uuid.UUID | None
    learner_id: uuid.UUID | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role is Role.PLATFORM_ADMIN

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @property
    def is_admin(self) -> bool:
        return self.role in ADMIN_ROLES

    def require(self, *roles: Role) -> None:
        """Refuse (403) an actor whose role is not listed."""
        if self.role not in roles:
            raise PermissionDenied(f"this needs one of the roles: {', '.join(r.value for r in roles)}")

    def require_staff(self) -> None:
        self.require(*STAFF_ROLES)

    def require_admin(self) -> None:
        self.require(*ADMIN_ROLES)

    def own_learner_id(self) -> uuid.UUID:
        """The learner profile behind a learner login."""
        if self.learner_id is None:
            raise PermissionDenied("this login has no learner profile")
        return self.learner_id


def tenant_filter(stmt: S, column: Any, actor: Actor) -> S:
    """Rows of the actor's institution (platform admins see every institution)."""
    if actor.is_platform_admin:
        return stmt
    return stmt.where(column == actor.institution_id)


def catalog_filter(stmt: S, column: Any, actor: Actor) -> S:
    """Rows of the actor's institution plus the shared catalogue (institution NULL)."""
    if actor.is_platform_admin:
        return stmt
    return stmt.where(sa.or_(column == actor.institution_id, column.is_(None)))


def ensure_visible(row: Any, actor: Actor, *, catalog: bool = False, what: str = "resource") -> None:
    """NotFound unless the row belongs to the actor's tenant (or the catalogue, if allowed)."""
    if row is None or getattr(row, "deleted_at", None) is not None:
        raise NotFound(f"{what} not found")
    if actor.is_platform_admin:
        return
    owner = row.institution_id
    if owner == actor.institution_id or (catalog and owner is None):
        return
    raise NotFound(f"{what} not found")


def ensure_editable(row: Any, actor: Actor, *, what: str = "resource") -> None:
    """Staff may edit their institution's rows; only platform admins edit the catalogue."""
    ensure_visible(row, actor, catalog=True, what=what)
    actor.require_staff()
    if row.institution_id is None and not actor.is_platform_admin:
        raise PermissionDenied("the shared catalogue is edited by platform admins")


def owning_institution(actor: Actor, requested: uuid.UUID | None) -> uuid.UUID | None:
    """The institution new rows belong to: the actor's own; platform admins may choose
    one, or NULL for the shared catalogue."""
    if actor.is_platform_admin:
        return requested
    if requested is not None and requested != actor.institution_id:
        raise NotFound("institution not found")
    return actor.institution_id


def ensure_learners_row(row: Any, actor: Actor, *, what: str) -> None:
    """NotFound unless the row is in the actor's tenant and, for a learner login, their own
    (another learner's row does not exist, as far as a learner can tell)."""
    ensure_visible(row, actor, what=what)
    if not actor.is_staff and row.learner_id != actor.learner_id:
        raise NotFound(f"{what} not found")


def learner_scope(stmt: S, *, learner_column: Any, institution_column: Any, actor: Actor) -> S:
    """Rows the actor may list: their institution's, and for a learner login only their own."""
    stmt = tenant_filter(stmt, institution_column, actor)
    if not actor.is_staff:
        stmt = stmt.where(learner_column == actor.own_learner_id())
    return stmt
