"""sync protocol: conflicts, rejections, node state, push ranges

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:34:42.542885
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=True),
        sa.Column("winner_hlc", sa.BigInteger(), nullable=False),
        sa.Column("winner_node_id", sa.Uuid(), nullable=True),
        sa.Column("loser_hlc", sa.BigInteger(), nullable=False),
        sa.Column("loser_node_id", sa.Uuid(), nullable=True),
        sa.Column("loser", sa.JSON(), nullable=False),
        sa.Column("detected_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_conflicts")),
    )
    with op.batch_alter_table("sync_conflicts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_conflicts_institution_id"), ["institution_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_conflicts_row_id"), ["row_id"], unique=False)

    op.create_table(
        "sync_rejections",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("node_id", sa.Uuid(), nullable=False),
        sa.Column("institution_id", sa.Uuid(), nullable=True),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("row_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("row", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_rejections")),
    )
    with op.batch_alter_table("sync_rejections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_rejections_institution_id"), ["institution_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_rejections_node_id"), ["node_id"], unique=False)

    op.create_table(
        "sync_state",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sync_state")),
    )
    with op.batch_alter_table("edge_nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_pull_catalog_seq", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_push_from", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("last_push_digest", sa.String(length=64), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("rows_pushed", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("rows_rejected", sa.BigInteger(), nullable=False, server_default="0"))

    with op.batch_alter_table("sync_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("base_hlc", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("sync_outbox", schema=None) as batch_op:
        batch_op.drop_column("base_hlc")

    with op.batch_alter_table("edge_nodes", schema=None) as batch_op:
        batch_op.drop_column("rows_rejected")
        batch_op.drop_column("rows_pushed")
        batch_op.drop_column("last_push_digest")
        batch_op.drop_column("last_push_from")
        batch_op.drop_column("last_pull_catalog_seq")

    op.drop_table("sync_state")
    with op.batch_alter_table("sync_rejections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_rejections_node_id"))
        batch_op.drop_index(batch_op.f("ix_sync_rejections_institution_id"))

    op.drop_table("sync_rejections")
    with op.batch_alter_table("sync_conflicts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_conflicts_row_id"))
        batch_op.drop_index(batch_op.f("ix_sync_conflicts_institution_id"))

    op.drop_table("sync_conflicts")
