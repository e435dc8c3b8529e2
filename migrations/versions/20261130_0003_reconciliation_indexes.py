"""reconciliation indexes: a day's payments and inbox rows by time, not by full scan

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_payments_paid_at", "payments", ["paid_at"])
    op.create_index("ix_webhook_events_kind_received", "webhook_events", ["provider", "kind", "received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_kind_received", table_name="webhook_events")
    op.drop_index("ix_payments_paid_at", table_name="payments")
