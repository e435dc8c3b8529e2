"""phone channels: USSD end-of-session events, inbound SMS and SMS delivery reports

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 01:38:42.605610
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_sms",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("at_id", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("link_id", sa.String(length=128), nullable=True),
        sa.Column("network_code", sa.String(length=16), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("command", sa.String(length=32), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "received", "processed", "failed", name="status", native_enum=False, create_constraint=True, length=32
            ),
            nullable=False,
        ),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_sms")),
        sa.UniqueConstraint("at_id", name=op.f("uq_inbound_sms_at_id")),
    )
    with op.batch_alter_table("inbound_sms", schema=None) as batch_op:
        batch_op.create_index("ix_inbound_sms_status_received", ["status", "received_at"], unique=False)

    op.create_table(
        "sms_delivery_reports",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("network_code", sa.String(length=16), nullable=True),
        sa.Column("failure_reason", sa.String(length=64), nullable=True),
        sa.Column("retry_count", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_delivery_reports")),
        sa.UniqueConstraint("message_id", "status", name=op.f("uq_sms_delivery_reports_message_id_status")),
    )
    with op.batch_alter_table("sms_delivery_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_delivery_reports_message_id"), ["message_id"], unique=False)

    op.create_table(
        "ussd_session_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("service_code", sa.String(length=32), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("network_code", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("hops", sa.Integer(), nullable=True),
        sa.Column("input", sa.Text(), nullable=True),
        sa.Column("last_app_response", sa.Text(), nullable=True),
        sa.Column("last_screen", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cost", sa.String(length=32), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ussd_session_events")),
        sa.UniqueConstraint("session_id", name=op.f("uq_ussd_session_events_session_id")),
    )
    with op.batch_alter_table("ussd_session_events", schema=None) as batch_op:
        batch_op.create_index("ix_ussd_session_events_received", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ussd_session_events", schema=None) as batch_op:
        batch_op.drop_index("ix_ussd_session_events_received")

    op.drop_table("ussd_session_events")
    with op.batch_alter_table("sms_delivery_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_delivery_reports_message_id"))

    op.drop_table("sms_delivery_reports")
    with op.batch_alter_table("inbound_sms", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_sms_status_received")

    op.drop_table("inbound_sms")
