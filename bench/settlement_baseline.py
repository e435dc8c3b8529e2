"""The floor of "store, then acknowledge" for the settlement benchmark: a bare aiohttp app
that files each STK callback's raw body in a table of its own (unique on CheckoutRequestID
and body hash, like the real inbox) through the raw driver and answers Daraja's ack. No
middleware, no ORM, no settlement. Run: python -m bench.settlement_baseline URL PORT
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from aiohttp import web

from bench.baseline_app import Sqlite

ACK = json.dumps({"ResultCode": 0, "ResultDesc": "Accepted"})
TABLE = "bench_callback_inbox"
SQLITE_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id CHAR(32) PRIMARY KEY, event_key VARCHAR(128) NOT NULL, "
    "body_sha256 VARCHAR(64) NOT NULL, body TEXT NOT NULL, received_at TIMESTAMP NOT NULL, "
    "UNIQUE (event_key, body_sha256))"
)
POSTGRES_DDL = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id UUID PRIMARY KEY, event_key VARCHAR(128) NOT NULL, "
    "body_sha256 VARCHAR(64) NOT NULL, body TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL, "
    "UNIQUE (event_key, body_sha256))"
)
store_key = web.AppKey("store", object)


class SqliteInbox:
    """One connection: SQLite has one writer, and queueing on aiosqlite's thread is the cheapest wait."""

    def __init__(self, path: str) -> None:
        self.db = Sqlite(path, size=1)

    async def open(self) -> None:
        await self.db.open()
        await self.insert_sql(SQLITE_DDL)

    async def insert_sql(self, sql: str, *args: Any) -> None:
        conn = await self.db.idle.get()
        try:
            await conn.execute(sql, args)  # autocommit: the connection has isolation_level=None
        finally:
            self.db.idle.put_nowait(conn)

    async def store(self, key: str, digest: str, body: str) -> None:
        await self.insert_sql(
            f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, datetime('now')) ON CONFLICT DO NOTHING",  # noqa: S608 (a constant)
            uuid.uuid4().hex,
            key,
            digest,
            body,
        )

    async def close(self) -> None:
        await self.db.close()


class PostgresInbox:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        # As many connections as the real server's pool may open (pool_size + max_overflow).
        self.pool = await asyncpg.create_pool(self.dsn, min_size=2, max_size=20)
        await self.pool.execute(POSTGRES_DDL)

    async def store(self, key: str, digest: str, body: str) -> None:
        assert self.pool is not None
        await self.pool.execute(
            f"INSERT INTO {TABLE} VALUES ($1, $2, $3, $4, now()) ON CONFLICT DO NOTHING",  # noqa: S608 (a constant)
            uuid.uuid4(),
            key,
            digest,
            body,
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()


async def stk_callback(request: web.Request) -> web.Response:
    raw = await request.read()
    key = json.loads(raw)["Body"]["stkCallback"]["CheckoutRequestID"]
    await request.app[store_key].store(key, hashlib.sha256(raw).hexdigest(), raw.decode())  # type: ignore[attr-defined]
    return web.Response(text=ACK, content_type="application/json")


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(url: str) -> web.Application:
    app = web.Application()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        inbox: SqliteInbox | PostgresInbox
        if url.startswith("sqlite"):
            inbox = SqliteInbox(url.split("///", 1)[1])
        else:
            inbox = PostgresInbox(url.replace("postgresql+asyncpg://", "postgresql://"))
        await inbox.open()
        app[store_key] = inbox
        yield
        await inbox.close()

    app.cleanup_ctx.append(store_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/callbacks/mpesa/{secret}/stk", stk_callback)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
