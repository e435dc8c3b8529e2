"""Declarative base, naming convention, common mixins and the engine/session factories.

The factories take plain values (a URL, a ``SyncContext``), never settings: only the
composition roots (``server``, ``edge_node``) read configuration.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, TypeVar, cast

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column
from sqlalchemy.util import await_only

from lms_domain import sqlite_driver
from lms_domain.ids import new_id
from lms_domain.types import UTCDateTime

T = TypeVar("T")

# Stable constraint names on both SQLite and Postgres; alembic batch mode needs them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
READ_ONLY_OPTION = "somo_read_only"
WRITER_WAIT_S = 30.0  # as long as SQLite's busy_timeout


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: sa.Uuid(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
        list[str]: sa.JSON(),
        list[int]: sa.JSON(),
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id, sort_order=-100)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# tenant: institution_id, NULL meaning the shared catalogue; self: the row is the tenant;
# tenant_only: like tenant, but a NULL institution keeps the row on the central server.
SyncScope = Literal["tenant", "self", "tenant_only"]


class SyncMixin(TimestampMixin):
    """Columns every synced table carries; see ``lms_domain.changes`` for who fills them.

    ``hlc`` and ``origin_node_id`` version the row independently of wall clocks;
    ``change_seq`` is the position of the row's latest change in its scope's feed and
    is only ever assigned by the central server; deletes are soft (``deleted_at``) so
    they travel like any other change.
    """

    __sync_scope__: ClassVar[SyncScope] = "tenant"
    # Columns that stay on the node holding them (credentials): never sent, and a change to
    # nothing else is not a change to sync.
    __sync_private__: ClassVar[frozenset[str]] = frozenset()

    hlc: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    origin_node_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    change_seq: Mapped[int | None] = mapped_column(sa.BigInteger, default=None, index=True)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # Optimistic concurrency on the version: an UPDATE names the hlc it read, so a sync
        # merge committed in between (a newer version from a school) is never overwritten by
        # a write based on the older one; that unit of work fails and may be retried.
        return {"version_id_col": cls.__table__.c.hlc, "version_id_generator": False}  # type: ignore[attr-defined]


class TenantMixin:
    """Rows owned by exactly one institution."""

    institution_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("institutions.id", ondelete="RESTRICT"), index=True)


class CatalogMixin:
    """Rows owned by an institution, or shared platform catalogue when NULL."""

    institution_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("institutions.id", ondelete="RESTRICT"), index=True, default=None
    )


def apply_changes(row: Any, changes: dict[str, Any]) -> None:
    """Apply a PATCH. A null for a NOT NULL column means "unchanged" (it cannot be cleared),
    read from the table itself so no caller keeps its own list of required fields."""
    columns = type(row).__table__.c
    for name, value in changes.items():
        if value is None and name in columns and not columns[name].nullable:
            continue
        setattr(row, name, value)


async def lock(session: AsyncSession, model: type[T], row_id: uuid.UUID) -> T | None:
    """The row, locked until the transaction ends (``FOR UPDATE``; SQLite serialises writers
    anyway) and re-read, so a copy already in the session cannot hide a concurrent change."""
    stmt: Any = (
        sa.select(model)
        .where(model.id == row_id)  # type: ignore[attr-defined]
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return cast("T | None", await session.scalar(stmt))


async def lock_or_claim(session: AsyncSession, model: type[T], row_id: uuid.UUID) -> T | None:
    """The row, locked (as ``lock``); or, when it does not exist yet, a claim on its id, so
    transactions racing to create it queue: each later one then finds, locked, the row the
    first one wrote, instead of failing on a duplicate key. On SQLite writers are serialised
    already, so nobody can have created it meanwhile."""
    row = await lock(session, model, row_id)
    if row is not None or session.get_bind().dialect.name != "postgresql":
        return row
    await serialize_on(session, f"{model.__tablename__}:{row_id}")  # type: ignore[attr-defined]
    return await lock(session, model, row_id)


# Deadlocks, serialisation failures, lock timeouts and SQLite's busy writer: the database
# asks for the unit of work to be tried again, nothing was wrong with it.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001", "55P03"})


def is_transient(exc: sa.exc.DBAPIError) -> bool:
    """Whether a database error means "try the same unit of work again"."""
    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return sqlstate in _TRANSIENT_SQLSTATES or "database is locked" in str(exc.orig)


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()


def create_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    foreign_keys: bool = True,
    writer_lock: asyncio.Lock | None = None,
) -> AsyncEngine:
    """An async engine with the per-connection set-up each backend needs.

    SQLite only: ``foreign_keys=False`` is for an edge applying the central feed, whose rows
    arrive coalesced (a parent edited after its child comes after it) and were checked
    centrally; ``writer_lock`` lets that engine queue with the learners' engine on one lock.
    """
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(f"unsupported database driver {parsed.drivername!r}; use one of {SUPPORTED_DRIVERS}")
    if parsed.get_backend_name() == "sqlite":
        # Each aiosqlite connection is a thread; a few suffice (SQLite has one writer) and
        # more only add GIL contention.
        # The pool's rollback-on-return is skipped: it is one more hop to the connection's
        # thread per unit of work, and every session already ends its transaction itself.
        # One hop to the connection's thread per statement, not four (see sqlite_driver).
        database = parsed.database or ":memory:"
        engine = create_async_engine(
            parsed,
            echo=echo,
            async_creator=functools.partial(sqlite_driver.connector, database, timeout=30),
            pool_size=min(pool_size, 4),
            max_overflow=2,
            pool_reset_on_return=None,
        )
        sqlite_driver.use_fast_types(engine.sync_engine.dialect)
        _configure_sqlite(engine, foreign_keys=foreign_keys, writer_lock=writer_lock or asyncio.Lock())
        return engine
    # No pre-ping (a round trip on every checkout); connections are recycled instead, and a
    # dead one fails that one unit of work, which the caller may retry.
    return create_async_engine(parsed, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800)


def _configure_sqlite(engine: AsyncEngine, *, foreign_keys: bool, writer_lock: asyncio.Lock) -> None:
    # SQLite ignores foreign keys unless told per connection. WAL lets learners keep
    # reading while a sync batch writes. Taking over BEGIN (the SQLAlchemy "serializable
    # isolation / savepoints" recipe) makes SAVEPOINT and rollback behave on aiosqlite.
    # A unit of work that may write starts with BEGIN IMMEDIATE: a deferred transaction
    # that reads, then writes after another connection committed, fails at once with
    # "database is locked" instead of waiting; IMMEDIATE waits for the write lock (up to
    # busy_timeout). Read-only units of work keep a deferred BEGIN and never block.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # SQLite has one writer. Writers of this process queue on an asyncio lock, which wakes
    # the next one the moment the lock is free, instead of in SQLite's busy handler, which
    # sleeps up to 100 ms between retries (the cause of multi-second p99s under load). The
    # busy handler still arbitrates between processes.

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Read-only units of work run each statement in autocommit: no BEGIN/COMMIT round
        # trips to the driver thread, and WAL still gives each statement a consistent view.
        if conn.get_execution_options().get(READ_ONLY_OPTION, False):
            return
        try:
            await_only(asyncio.wait_for(writer_lock.acquire(), WRITER_WAIT_S))
        except TimeoutError:
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", None, Exception("database is locked")) from None
        conn.info["somo.holds_writer_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn: sa.Connection) -> None:
        try:
            info = conn.info
        except sa.exc.InvalidRequestError:
            # A connection invalidated mid-transaction (its task cancelled at a deadline): the
            # pool's invalidate event below releases the lock through the connection record.
            return
        if info.pop("somo.holds_writer_lock", False):
            writer_lock.release()

    # Released once the transaction has ended (the events fire before the driver's commit
    # or rollback; the next writer's BEGIN IMMEDIATE then waits at most that long).
    event.listen(engine.sync_engine, "commit", _release)
    event.listen(engine.sync_engine, "rollback", _release)

    def _release_record(_dbapi: Any, record: Any, *_rest: Any) -> None:
        # A connection that goes back to the pool, or dies, mid-transaction must not keep
        # every other writer waiting.
        if record is not None and record.info.pop("somo.holds_writer_lock", False):
            writer_lock.release()

    event.listen(engine.sync_engine.pool, "checkin", _release_record)
    event.listen(engine.sync_engine.pool, "invalidate", _release_record)


def make_sessionmaker(
    engine: AsyncEngine, sync_context: Any, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """One ``AsyncSession`` per unit of work; the sync context rides in ``session.info``.

    ``read_only`` sessions never take SQLite's write lock, so reads never queue behind a
    sync batch, and run in autocommit (no transaction round trips). They refuse to flush
    changes: a write there would not be atomic.
    """
    if not read_only:
        return async_sessionmaker(engine, expire_on_commit=False, info={"somo.sync": sync_context})
    options: dict[str, Any] = {READ_ONLY_OPTION: True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "AUTOCOMMIT"  # no BEGIN/COMMIT round trips for reads
    return async_sessionmaker(
        engine.execution_options(**options),
        expire_on_commit=False,
        info={"somo.sync": sync_context, READ_ONLY_OPTION: True},
    )


def dialect_insert(session: AsyncSession, target: Any) -> Any:
    """An INSERT with the dialect's ``on_conflict_do_nothing`` (Postgres or SQLite); ``target``
    is a model, or its ``__table__`` for a plain Core insert (cheaper for many rows)."""
    return (pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(target)


async def insert_once(
    session: AsyncSession, model: type[Any], values: dict[str, Any], *, unique: list[str]
) -> uuid.UUID | None:
    """Insert a row unless one with the same ``unique`` columns exists; the new row's id, or
    None for a duplicate. ON CONFLICT DO NOTHING rather than a savepoint, so a retried
    callback racing its first delivery never fails either request."""
    stmt = dialect_insert(session, model).values(**values).on_conflict_do_nothing(index_elements=unique)
    stmt = stmt.returning(model.id)
    inserted: uuid.UUID | None = await session.scalar(stmt)
    return inserted


async def serialize_on(session: AsyncSession, key: str) -> None:
    """Hold a transaction-scoped lock on ``key``: two transactions that take it run one after
    the other, the second seeing what the first committed. Postgres needs it (an advisory lock);
    SQLite's writers are serialised already."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))
