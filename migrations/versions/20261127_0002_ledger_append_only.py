"""ledger append-only: triggers refuse UPDATE and DELETE on postings and journal_entries

A correction is a new, balancing entry; history is never rewritten. On Postgres one
trigger function raises ``restrict_violation`` (SQLSTATE 23001, so drivers report an
integrity error, as SQLite's ``RAISE(ABORT)`` does); TRUNCATE is refused too. Row-level
triggers only fire for rows that exist, so a bulk DELETE that matches nothing still works.

Autogenerate does not compare triggers, so ``alembic check`` stays clean. Beware: on
SQLite, a later ``batch_alter_table`` on these tables recreates them and drops the
triggers with them; such a migration must recreate them (call ``_create_sqlite``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("postings", "journal_entries")
OPERATIONS = ("UPDATE", "DELETE")
PG_FUNCTION = "ledger_append_only"


def _create_postgres() -> None:
    op.execute(
        f"""
        CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% are append-only (% refused)', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END
        $$
        """
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {PG_FUNCTION}()"
        )


def _drop_postgres() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")


def _create_sqlite() -> None:
    for table in TABLES:
        for operation in OPERATIONS:
            op.execute(
                f"CREATE TRIGGER {table}_append_only_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} are append-only ({operation} refused)'); END"
            )


def _drop_sqlite() -> None:
    for table in TABLES:
        for operation in OPERATIONS:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only_{operation.lower()}")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _create_postgres()
    else:
        _create_sqlite()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _drop_postgres()
    else:
        _drop_sqlite()
