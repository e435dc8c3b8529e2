"""queued renewals

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 11:04:18.832159
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "queued_renewals",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("subscription_id", sa.Uuid(), nullable=False),
        sa.Column("learner_id", sa.Uuid(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "prompted",
                "refused",
                "failed",
                name="status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=200), nullable=True),
        sa.Column("attempt_id", sa.Uuid(), nullable=True),
        sa.Column("hlc", sa.BigInteger(), nullable=False),
        sa.Column("origin_node_id", sa.Uuid(), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("change_seq", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_queued_renewals_institution_id_institutions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["learner_id"], ["learners.id"], name=op.f("fk_queued_renewals_learner_id_learners"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_queued_renewals_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queued_renewals")),
    )
    with op.batch_alter_table("queued_renewals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_queued_renewals_change_seq"), ["change_seq"], unique=False)
        batch_op.create_index(batch_op.f("ix_queued_renewals_institution_id"), ["institution_id"], unique=False)
        batch_op.create_index("ix_queued_renewals_status", ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_queued_renewals_subscription_id"), ["subscription_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("queued_renewals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_queued_renewals_subscription_id"))
        batch_op.drop_index("ix_queued_renewals_status")
        batch_op.drop_index(batch_op.f("ix_queued_renewals_institution_id"))
        batch_op.drop_index(batch_op.f("ix_queued_renewals_change_seq"))

    op.drop_table("queued_renewals")
