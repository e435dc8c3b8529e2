"""reconciliation runs and the exceptions queue

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:43:50.267478
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("providers", sa.JSON(), nullable=False),
        sa.Column("heal", sa.Boolean(), nullable=False),
        sa.Column("checked_missing_at_provider", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provider_records", sa.Integer(), nullable=False),
        sa.Column("records_received", sa.Integer(), nullable=False),
        sa.Column("ledger_payments", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("found", sa.Integer(), nullable=False),
        sa.Column("healed", sa.Integer(), nullable=False),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
    )
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reconciliation_runs_day"), ["day"], unique=False)

    op.create_table(
        "reconciliation_exceptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=True),
        sa.Column(
            "category",
            sa.Enum(
                "missing_in_ledger",
                "missing_at_provider",
                "amount_mismatch",
                "duplicate",
                name="category",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("receipt", sa.String(length=64), nullable=True),
        sa.Column("checkout_request_id", sa.String(length=64), nullable=True),
        sa.Column("provider_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("ledger_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_id", sa.Uuid(), nullable=True),
        sa.Column("intent_id", sa.Uuid(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("open", "resolved", name="status", native_enum=False, create_constraint=True, length=32),
            nullable=False,
        ),
        sa.Column(
            "resolution",
            sa.Enum(
                "matched_manually",
                "refunded",
                "written_off",
                "provider_error",
                "not_an_issue",
                "healed",
                name="resolution",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("resolved_by_id", sa.Uuid(), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_run_id", sa.Uuid(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_run_id", sa.Uuid(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(status = 'open') = (resolution IS NULL AND resolved_at IS NULL)",
            name=op.f("ck_reconciliation_exceptions_resolved_has_resolution"),
        ),
        sa.ForeignKeyConstraint(
            ["first_seen_run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_exceptions_first_seen_run_id_reconciliation_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["institution_id"],
            ["institutions.id"],
            name=op.f("fk_reconciliation_exceptions_institution_id_institutions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["intent_id"],
            ["payment_intents.id"],
            name=op.f("fk_reconciliation_exceptions_intent_id_payment_intents"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["last_seen_run_id"],
            ["reconciliation_runs.id"],
            name=op.f("fk_reconciliation_exceptions_last_seen_run_id_reconciliation_runs"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_reconciliation_exceptions_payment_id_payments"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["resolved_by_id"],
            ["users.id"],
            name=op.f("fk_reconciliation_exceptions_resolved_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_exceptions")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_reconciliation_exceptions_fingerprint")),
    )
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reconciliation_exceptions_institution_id"), ["institution_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_reconciliation_exceptions_receipt"), ["receipt"], unique=False)
        batch_op.create_index(
            "ix_reconciliation_exceptions_status_institution", ["status", "institution_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_exceptions", schema=None) as batch_op:
        batch_op.drop_index("ix_reconciliation_exceptions_status_institution")
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_receipt"))
        batch_op.drop_index(batch_op.f("ix_reconciliation_exceptions_institution_id"))

    op.drop_table("reconciliation_exceptions")
    with op.batch_alter_table("reconciliation_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reconciliation_runs_day"))

    op.drop_table("reconciliation_runs")
