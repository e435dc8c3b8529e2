"""The console's menu: what each role is offered. The pages check roles again themselves;
the menu only hides what a role could not open anyway."""

from __future__ import annotations

from dataclasses import dataclass

from lms_domain.access import Actor
from lms_domain.tenancy.models import Role

PLATFORM = frozenset({Role.PLATFORM_ADMIN})
ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})
STAFF = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN, Role.INSTRUCTOR})


@dataclass(frozen=True)
class MenuItem:
    label: str
    url: str
    roles: frozenset[Role]


MENU: tuple[MenuItem, ...] = (
    MenuItem("Dashboard", "/admin", STAFF),
    MenuItem("Institutions", "/admin/institutions", PLATFORM),
    MenuItem("Users", "/admin/users", ADMINS),
    MenuItem("Learners", "/admin/learners", STAFF),
    MenuItem("Courses", "/admin/courses", STAFF),
    MenuItem("Payments", "/admin/payments", ADMINS),
    MenuItem("Ledger", "/admin/ledger", ADMINS),
    MenuItem("Reconciliation", "/admin/reconciliation", ADMINS),
    MenuItem("Suspense", "/admin/suspense", ADMINS),
    MenuItem("Refunds", "/admin/refunds", ADMINS),
    MenuItem("Subscriptions", "/admin/subscriptions", ADMINS),
    MenuItem("Notifications", "/admin/notifications", ADMINS),
    MenuItem("Edge nodes", "/admin/edge-nodes", ADMINS),
    MenuItem("USSD analytics", "/admin/ussd", ADMINS),
    MenuItem("Audit log", "/admin/audit", ADMINS),
)


def menu_for(actor: Actor) -> list[MenuItem]:
    return [item for item in MENU if actor.role in item.roles]
