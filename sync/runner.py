"""One sync of a node: push the outbox, then pull the feed, one short transaction per batch.

Push first, so that by the time the feed comes back the central server has already merged
this node's changes (and logged any conflict with what others did). Every batch commits on
its own, so a kill anywhere loses at most the batch in hand, and a sync with nothing to do
costs one request (the empty pull), once the node holds a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.changefeed import SyncContext
from lms_domain.changefeed.models import OutboxEntry
from lms_domain.clock import Clock
from lms_domain.courses.models import Asset
from sync import outbox, state, tombstones
from sync.apply import apply_batch, split
from sync.client import SyncClient, SyncError
from sync.policy import POLICIES, table
from sync.protocol import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, Cursor

log = logging.getLogger("somo.sync")

# (stage, done, total or None): called after every batch, for a progress bar or a log line.
Progress = Callable[[str, int, int | None], None]
RESTORE_CODES = frozenset({"node_restored", "epoch_mismatch"})
# Rows per apply transaction: about 10-15 ms of SQLite work, what a learner's write may wait.
APPLY_ROWS = 250
# While learners use the node: smaller answers (each is parsed in one go on the event loop)
# and smaller write transactions (a learner's write waits for at most one).
BUSY_BATCH_ROWS = 400
BUSY_APPLY_ROWS = 50


@dataclass
class SyncReport:
    pushed_rows: int = 0
    pushed_batches: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    conflicts: int = 0
    pulled_rows: int = 0
    pulled_batches: int = 0
    assets: int = 0
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    seconds: float = 0.0
    new_epoch: int | None = None
    recopied: bool = False
    pulled_tombstones: int = 0
    pushed_tombstones: int = 0
    tombstones_collected: int = 0

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out["rejected"] = len(self.rejected)
        return out


class Activity:
    """When learners last used the node's database (set by an engine event in ``edge_node``):
    while they do, the sync gives way (see ``pull``)."""

    def __init__(self) -> None:
        self.last = float("-inf")

    def touch(self) -> None:
        self.last = time.monotonic()

    def recent(self, within_s: float = 1.0) -> bool:
        return time.monotonic() - self.last < within_s


@dataclass
class NodeDatabase:
    """The node's two ways into its database: the learners' (foreign keys on; its use is
    what ``activity`` watches) and the sync's own (foreign keys off, see
    ``lms_domain.db.create_engine``), for applying the feed and all the sync's bookkeeping,
    so that a sync never mistakes its own work for a learner's and slows itself down. Each
    has a read-only way in, which never queues for SQLite's write lock."""

    write: async_sessionmaker[AsyncSession]
    read: async_sessionmaker[AsyncSession]  # read-only: never queues for SQLite's write lock
    apply: async_sessionmaker[AsyncSession]
    apply_read: async_sessionmaker[AsyncSession]  # the sync's reads: no write lock, no learner
    context: SyncContext
    clock: Clock
    activity: Activity | None = None


async def sync_once(
    db: NodeDatabase,
    client: SyncClient,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    asset_dir: Path | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    started = time.monotonic()
    before = (client.traffic.requests, client.traffic.bytes_up, client.traffic.bytes_down)
    report = SyncReport()
    async with db.apply_read() as session:
        identity = await state.identity(session)
        pending = await outbox.pending_count(session)
    if identity is None:
        raise SyncError(400, "not_enrolled", "this node is not enrolled: run somo edge init")
    try:
        await _push(db, client, identity, report, batch_rows, batch_bytes, pending, progress)
        await pull(db, client, report, batch_rows, progress)
        if asset_dir is not None:
            report.assets = await cache_assets(db, client, asset_dir)
    except Exception as exc:
        await _record(db, report, error=str(exc))
        raise
    finally:
        report.requests = client.traffic.requests - before[0]
        report.bytes_up = client.traffic.bytes_up - before[1]
        report.bytes_down = client.traffic.bytes_down - before[2]
        report.seconds = round(time.monotonic() - started, 3)
    await _record(db, report, error=None)
    return report


async def _push(
    db: NodeDatabase,
    client: SyncClient,
    identity: state.Identity,
    report: SyncReport,
    batch_rows: int,
    batch_bytes: int,
    pending: int,
    progress: Progress | None,
) -> None:
    feed = str(identity.institution_id)
    epoch = identity.epoch
    restarts = 0
    while True:
        async with db.apply() as session, session.begin():
            batch = await outbox.next_batch(
                session,
                node_id=identity.node_id,
                feed=feed,
                epoch=epoch,
                max_rows=batch_rows,
                max_bytes=batch_bytes,
            )
        if batch is None:
            return
        try:
            ack = await client.push(batch.document)
        except SyncError as exc:
            if exc.code not in RESTORE_CODES or restarts >= 2:
                raise
            # A restored backup or a copy: the central server has seen these numbers for
            # other changes. Start a new epoch and send everything still pending again
            # (merging is idempotent, so what it already has costs nothing).
            restarts += 1
            epoch = await client.new_epoch()
            log.warning("edge database restored or copied: new epoch", extra={"epoch": epoch})
            async with db.apply() as session, session.begin():
                await state.update(session, state.IDENTITY, epoch=epoch)
                await outbox.restart_numbering(session)
            report.new_epoch = epoch
            continue
        async with db.apply() as session, session.begin():
            await outbox.acknowledge(session, feed=feed, to_seq=int(ack["acked"]))
        report.pushed_batches += 1
        report.pushed_rows += batch.rows
        report.pushed_tombstones += batch.deletes
        report.conflicts += int(ack.get("conflicts", 0))
        report.rejected.extend(ack.get("rejected", []))
        if progress:
            progress("push", report.pushed_rows, pending)


async def pull(
    db: NodeDatabase,
    client: SyncClient,
    report: SyncReport,
    batch_rows: int,
    progress: Progress | None = None,
    *,
    apply_rows: int = APPLY_ROWS,
) -> None:
    """The pull half alone: what a sync does after pushing (and what happens anyway to any
    change made at the node while a sync runs: it is pushed next time).

    Pipelined: the next batch is requested, with the cursor the current answer names, while
    the current one is applied, so the central server's reading and this node's writing
    overlap; at most two batches are ever held. Each batch is applied in parts of
    ``apply_rows`` rows, each its own short transaction. While learners use the node the
    sync asks for smaller batches, applies smaller parts and pauses between them.
    """
    async with db.apply_read() as session:
        cursor = await state.cursor(session)
        watermark = await _watermark(session)

    def busy() -> bool:
        return db.activity is not None and db.activity.recent()

    def limit() -> int:
        return min(batch_rows, BUSY_BATCH_ROWS) if busy() else batch_rows

    fetch: asyncio.Task[dict[str, Any]] = asyncio.create_task(client.pull(cursor, limit(), pushed=watermark))
    try:
        while True:
            try:
                document = await fetch
            except SyncError as exc:
                if exc.code != "cursor_expired" or cursor == Cursor():
                    raise
                # Offline for longer than deletions are kept centrally: some may have been
                # missed. Copy afresh, keeping only what this node has not pushed yet.
                log.warning("sync cursor expired: copying afresh", extra={"cursor": str(cursor)})
                async with db.apply() as session, session.begin():
                    await forget_synced_rows(session)
                cursor = Cursor()
                watermark = None
                report.recopied = True
                fetch = asyncio.create_task(client.pull(cursor, limit(), pushed=watermark))
                continue
            parts = split(document, min(apply_rows, BUSY_APPLY_ROWS) if busy() else apply_rows)
            announced = Cursor.parse(document.get("cursor") if isinstance(document, dict) else None)
            more = bool(document.get("more")) if isinstance(document, dict) else False
            if more:
                fetch = asyncio.create_task(client.pull(announced, limit(), pushed=watermark))
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                started = time.monotonic()
                async with db.apply() as session, session.begin():
                    _, _, applied = await apply_batch(
                        session, part, context=db.context, now=db.clock.now(), expected=cursor, write_cursor=last
                    )
                report.pulled_rows += applied.rows
                report.conflicts += applied.conflicts
                report.pulled_tombstones += applied.tombstones
                # Give way: while learners are using the node, the sync takes at most half the
                # time (a part's work, then as long again for theirs); otherwise it runs flat out.
                await asyncio.sleep(time.monotonic() - started if busy() else 0)
            cursor = announced
            report.pulled_batches += 1
            if progress:
                progress("pull", report.pulled_rows, None)
            if not more:
                break
        if watermark is None:
            async with db.apply() as session, session.begin():
                await state.write(session, state.RECOPY, {})  # the copy is whole again
    finally:
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, SyncError):
                await fetch
    if report.pulled_tombstones or report.pushed_tombstones:
        async with db.apply() as session, session.begin():
            # Deletions applied or pushed need no tombstone here: this node keeps live rows.
            report.tombstones_collected = await tombstones.collect(session, feed=None, horizon=None, keep_pending=True)


async def _watermark(session: AsyncSession) -> str | None:
    """``EPOCH.ACKED``, or None while a fresh copy is under way (see ``state.RECOPY``)."""
    if (await state.read(session, state.RECOPY)).get("active"):
        return None
    node = await state.identity(session)
    if node is None:
        return None
    return f"{node.epoch}.{int((await state.read(session, state.PUSH)).get('acked', 0))}"


async def forget_synced_rows(session: AsyncSession) -> None:
    """Every synced row except those with changes still to push, and the cursor: the next
    pull is a fresh copy, which must bring back this node's own pushed rows too."""
    for name in POLICIES:
        target = table(name)
        pending = sa.select(OutboxEntry.row_id).where(OutboxEntry.table_name == name)
        await session.execute(sa.delete(target).where(target.c.id.not_in(pending)))
    await state.write(session, state.CURSOR, {"value": str(Cursor())})
    await state.write(session, state.RECOPY, {"active": True})


async def cache_assets(db: NodeDatabase, client: SyncClient, asset_dir: Path) -> int:
    """Lesson files the node lacks, by checksum; a cut download resumes where it stopped."""
    async with db.apply_read() as session:
        wanted = set(
            await session.scalars(
                sa.select(Asset.checksum_sha256).where(Asset.file_path.is_not(None), Asset.deleted_at.is_(None))
            )
        )
    fetched = 0
    for sha in sorted(wanted):
        if (asset_dir / sha).exists():
            continue
        if await client.download_asset(sha, asset_dir / sha):
            fetched += 1
    return fetched


async def _record(db: NodeDatabase, report: SyncReport, *, error: str | None) -> None:
    now = db.clock.now().isoformat()
    changes: dict[str, Any] = {"last_attempt_at": now, "last_error": error}
    if error is None:
        changes.update(last_sync_at=now, last_report=report.summary())
    async with db.apply() as session, session.begin():
        await state.update(session, state.STATUS, **changes)
