"""Which tables travel, in which direction, and how two versions of a row merge.

One table of policies, read by the central server and the edge alike, so the two ends can
never disagree about a rule. ``docs/SYNC.md`` is the prose version of ``POLICIES``; a test
checks that every synced model has a policy and that the document names every table.

Every merge here is a join (commutative, associative, idempotent): applying the same rows
again, or in another order, or from another node first, gives the same row. That is what
makes a replayed or re-ordered batch harmless and lets every node converge.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import sqlalchemy as sa

import lms_domain.models  # noqa: F401 - every model registered, so table() finds them all
from lms_domain.db import Base, SyncMixin
from lms_domain.tenancy.models import Learner, User


class Direction(StrEnum):
    TWO_WAY = "two_way"  # edges and the central server both write it
    DOWN = "down"  # the central server writes it; edges only read it
    UP = "up"  # made at school, kept centrally, never sent back down


class Merge(StrEnum):
    # The central server is the authority: a newer central version (by change_seq) replaces
    # the edge's copy, and an edge may never push the table.
    SERVER = "server"
    # Last writer wins on (hlc, origin node); concurrent edits are logged as conflicts.
    LWW = "lww"
    # Last writer wins too, but only the node that created the row ever writes it (an
    # attempt is taken on one device), so there is no concurrency and nothing to log.
    SINGLE_WRITER = "single_writer"
    # Per-column joins (max percent, earliest completion): concurrent updates add up.
    MONOTONE = "monotone"


class Combine(StrEnum):
    MAX = "max"
    MIN = "min"


@dataclass(frozen=True)
class TablePolicy:
    name: str
    direction: Direction
    merge: Merge
    # Columns that never leave the node that holds them (credentials, lock-out counters).
    private: frozenset[str] = frozenset()
    # Columns an edge push may change on a row the central server already has; None means
    # every synced column. A push may still create a row with all its columns.
    edge_updatable: frozenset[str] | None = None
    # Values a receiving node fills for NOT NULL private columns it never gets.
    fill: Mapping[str, object] = field(default_factory=dict)
    # MONOTONE only: how each merged column joins; the rest follow the newer version.
    combine: Mapping[str, Combine] = field(default_factory=dict)

    @property
    def edge_may_push(self) -> bool:
        return self.direction in (Direction.TWO_WAY, Direction.UP)

    @property
    def logs_conflicts(self) -> bool:
        return self.merge is Merge.LWW


_DOWN = (Direction.DOWN, Merge.SERVER)
_CATALOG = (
    "courses",
    "sections",
    "lessons",
    "assets",
    "tags",
    "course_tags",
    "prerequisites",
    "quizzes",
    "questions",
    "question_choices",
    "products",
    "prices",
)

CATALOG = frozenset(_CATALOG)

POLICIES: dict[str, TablePolicy] = {
    "institutions": TablePolicy("institutions", *_DOWN),
    # Logins travel so an edge knows who may sign in there, but never their password hashes:
    # a password for the edge is set at the edge (somo edge set-password) and stays there.
    "users": TablePolicy(
        "users",
        *_DOWN,
        private=User.__sync_private__,
        fill={"password_hash": "!", "failed_logins": 0},
    ),
    "learners": TablePolicy(
        "learners",
        Direction.TWO_WAY,
        Merge.LWW,
        private=Learner.__sync_private__,
        edge_updatable=frozenset({"display_name", "language", "grade", "deleted_at"}),
        fill={"pin_failed_count": 0},
    ),
    **{name: TablePolicy(name, *_DOWN) for name in _CATALOG},
    "enrollments": TablePolicy("enrollments", Direction.TWO_WAY, Merge.LWW),
    "lesson_progress": TablePolicy(
        "lesson_progress",
        Direction.TWO_WAY,
        Merge.MONOTONE,
        combine={
            "percent": Combine.MAX,
            "first_seen_at": Combine.MIN,
            "last_seen_at": Combine.MAX,
            "completed_at": Combine.MIN,
        },
    ),
    "attempts": TablePolicy("attempts", Direction.TWO_WAY, Merge.SINGLE_WRITER),
    "answers": TablePolicy("answers", Direction.TWO_WAY, Merge.SINGLE_WRITER),
    # Issued once: the id and the verification code both derive from (learner, course), so
    # two nodes issuing offline write the same row; a later revocation is a newer version.
    "certificates": TablePolicy("certificates", Direction.TWO_WAY, Merge.SINGLE_WRITER),
    # Approved at school, prompted centrally: the edge writes it, the central server writes the
    # outcome after (having seen the edge's version, so its write is the newer one).
    "queued_renewals": TablePolicy(
        "queued_renewals",
        Direction.TWO_WAY,
        Merge.LWW,
        edge_updatable=frozenset(),
    ),
    "entitlements": TablePolicy("entitlements", *_DOWN),
    "subscriptions": TablePolicy("subscriptions", *_DOWN),
    "subscription_items": TablePolicy("subscription_items", *_DOWN),
    "subscription_usage": TablePolicy("subscription_usage", *_DOWN),
}

# Never synced, whatever a node asks: money, provider traffic and secrets. Listed so the
# document and the test can say so explicitly rather than by omission.
CENTRAL_ONLY = (
    "payments",
    "payment_intents",
    "payment_methods",
    "provider_accounts",
    "webhook_events",
    "journal_entries",
    "postings",
    "ledger_accounts",
    "refresh_tokens",
    "idempotency_keys",
    "edge_nodes",
    "orders",
    "invoices",
    "receipts",
    "refunds",
    "line_items",
    "coupons",
    "audit_log",
    # Reconciliation reports and the exceptions queue: money, worked on centrally.
    "reconciliation_runs",
    "reconciliation_exceptions",
    # Messaging runs centrally: notifications, their templates and tries, SMS and USSD traffic,
    # and the dunning schedules and renewal attempts that drive them.
    "notification_log",
    "notification_preferences",
    "notification_templates",
    "notification_tries",
    "inbound_sms",
    "sms_delivery_reports",
    "ussd_session_events",
    "dunning_schedules",
    "subscription_renewal_attempts",
)

# A row the learner tables reference but which is not versioned itself: global, keyed by
# a natural id, so it rides along with the rows that point at it and merges by "insert if
# absent".
COMPANIONS: dict[str, tuple[str, str]] = {"learners": ("phone_id", "phones")}

# Edge-local bookkeeping; present in every database, synced by nobody.
LOCAL_ONLY = ("sync_outbox", "sync_counters", "sync_state", "sync_conflicts", "sync_rejections", "alembic_version")

# Columns that describe where a row sits in the central feed, not what it holds.
FEED_COLUMNS = frozenset({"change_seq"})


def table(name: str) -> sa.Table:
    return Base.metadata.tables[name]


def synced_models() -> list[type[SyncMixin]]:
    """Every model carrying the sync columns, found from the mapper registry."""
    models = []
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        if issubclass(cls, SyncMixin):
            models.append(cls)
    return models


def wire_columns(policy: TablePolicy) -> list[str]:
    """The columns a row carries on the wire, in table order (stable across nodes)."""
    return list(_wire_columns(policy.name))


@functools.lru_cache(maxsize=128)
def _wire_columns(name: str) -> tuple[str, ...]:
    private = POLICIES[name].private
    return tuple(c.name for c in table(name).columns if c.name not in private)


# Columns that version a row rather than say what it holds: two versions equal but for these
# are the same edit made twice (two nodes enrolling a learner at once), not a conflict.
VERSION_ONLY = frozenset({"hlc", "origin_node_id", "created_at", "updated_at", "change_seq"})


def same_content(a: dict[str, object], b: dict[str, object]) -> bool:
    keys = (set(a) & set(b)) - VERSION_ONLY
    return all(a[k] == b[k] for k in keys)


def content_columns(policy: TablePolicy) -> list[str]:
    """The columns that say what a row holds: what checksums compare."""
    return [c for c in wire_columns(policy) if c not in FEED_COLUMNS]


def policy_for(name: str) -> TablePolicy | None:
    return POLICIES.get(name)
