"""The baseline for the API benchmark: a bare aiohttp app that runs the same SQL as the
real endpoints through the raw driver (asyncpg or sqlite3 via aiosqlite), with no
middleware, no ORM, no auth, no validation. Run: python -m bench.baseline_app URL PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiosqlite
import asyncpg
from aiohttp import web

pool_key = web.AppKey("pool", object)
LIST_SQL = (
    "SELECT id, institution_id, slug, title_en, title_sw, summary_en, summary_sw, access, is_published, "
    "created_at, updated_at FROM courses WHERE deleted_at IS NULL AND (institution_id = {p1} OR institution_id IS NULL) "
    "AND is_published ORDER BY id LIMIT 51"
)


class Sqlite:
    """A small pool of connections, like SQLAlchemy's pool in the real app."""

    def __init__(self, path: str, size: int = 5) -> None:
        self.path = path
        self.size = size
        self.idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()

    async def open(self) -> None:
        for _ in range(self.size):
            db = await aiosqlite.connect(self.path, isolation_level=None)
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute("PRAGMA busy_timeout=30000")
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute("PRAGMA synchronous=NORMAL")
            self.idle.put_nowait(db)

    async def close(self) -> None:
        while not self.idle.empty():
            await self.idle.get_nowait().close()

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        db = await self.idle.get()
        try:
            cursor = await db.execute(sql.replace("{p1}", "?"), args)
            return list(await cursor.fetchall())
        finally:
            self.idle.put_nowait(db)

    async def progress(self, learner: str, lesson: str, percent: int) -> None:
        db = await self.idle.get()
        try:
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            await db.execute("BEGIN IMMEDIATE")
            row = await (await db.execute("SELECT institution_id FROM learners WHERE id = ?", (learner,))).fetchone()
            lesson_row = await (await db.execute("SELECT course_id FROM lessons WHERE id = ?", (lesson,))).fetchone()
            assert row is not None and lesson_row is not None
            await db.execute(
                "SELECT id FROM enrollments WHERE learner_id = ? AND course_id = ?", (learner, lesson_row[0])
            )
            await db.execute(
                "UPDATE lesson_progress SET percent = max(percent, ?), last_seen_at = ? "
                "WHERE learner_id = ? AND lesson_id = ?",
                (percent, now, learner, lesson),
            )
            seq = await (
                await db.execute(
                    "INSERT INTO sync_counters (scope, value) VALUES (?, 1) ON CONFLICT (scope) DO UPDATE "
                    "SET value = sync_counters.value + 1 RETURNING value",
                    (row[0],),
                )
            ).fetchone()
            assert seq is not None
            await db.execute(
                "INSERT INTO sync_outbox (id, scope, seq, table_name, row_id, op, hlc, origin_node_id, created_at) "
                "VALUES (?, ?, ?, 'lesson_progress', ?, 'upsert', 0, ?, ?)",
                (uuid.uuid4().hex, row[0], seq[0], uuid.uuid4().hex, uuid.uuid4().hex, now),
            )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        finally:
            self.idle.put_nowait(db)


class Postgres:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(sql.replace("{p1}", "$1"), *args))

    async def progress(self, learner: str, lesson: str, percent: int) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            learner_id, lesson_id = uuid.UUID(learner), uuid.UUID(lesson)
            inst = await conn.fetchval("SELECT institution_id FROM learners WHERE id = $1", learner_id)
            course = await conn.fetchval("SELECT course_id FROM lessons WHERE id = $1", lesson_id)
            await conn.fetchval(
                "SELECT id FROM enrollments WHERE learner_id = $1 AND course_id = $2", learner_id, course
            )
            await conn.execute(
                "UPDATE lesson_progress SET percent = greatest(percent, $1), last_seen_at = now() "
                "WHERE learner_id = $2 AND lesson_id = $3",
                percent,
                learner_id,
                lesson_id,
            )
            seq = await conn.fetchval(
                "INSERT INTO sync_counters (scope, value) VALUES ($1, 1) ON CONFLICT (scope) DO UPDATE "
                "SET value = sync_counters.value + 1 RETURNING value",
                str(inst),
            )
            await conn.execute(
                "INSERT INTO sync_outbox (id, scope, seq, table_name, row_id, op, hlc, origin_node_id, created_at) "
                "VALUES ($1, $2, $3, 'lesson_progress', $4, 'upsert', 0, $5, now())",
                uuid.uuid4(),
                str(inst),
                seq,
                uuid.uuid4(),
                uuid.uuid4(),
            )


async def list_courses(request: web.Request) -> web.Response:
    db: Any = request.app[pool_key]
    rows = await db.fetch(LIST_SQL, request.query["institution_id"])
    items = [
        {k: (str(v) if not isinstance(v, (int, bool, type(None))) else v) for k, v in dict(r).items()}
        if hasattr(r, "keys")
        else [str(x) for x in r]
        for r in rows
    ]
    return web.Response(text=json.dumps({"items": items, "next_cursor": None}), content_type="application/json")


async def put_progress(request: web.Request) -> web.Response:
    body = await request.json()
    await request.app[pool_key].progress(body["learner_id"], request.match_info["lesson_id"], int(body["percent"]))  # type: ignore[attr-defined]
    return web.Response(text=json.dumps({"ok": True}), content_type="application/json")


def make_app(url: str) -> web.Application:
    app = web.Application()

    async def db_ctx(app: web.Application) -> AsyncIterator[None]:
        if url.startswith("sqlite"):
            sqlite = Sqlite(url.split("///", 1)[1])
            await sqlite.open()
            app[pool_key] = sqlite
            yield
            await sqlite.close()
            return
        pool = await asyncpg.create_pool(url.replace("postgresql+asyncpg://", "postgresql://"), min_size=2, max_size=20)
        app[pool_key] = Postgres(pool)
        yield
        await pool.close()

    app.cleanup_ctx.append(db_ctx)
    app.router.add_get("/courses", list_courses)
    app.router.add_put("/lessons/{lesson_id}/progress", put_progress)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
