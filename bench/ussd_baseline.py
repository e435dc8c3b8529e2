"""The two baselines of the USSD benchmark, one bare aiohttp app with no middleware, no
database, no engine:

* ``POST /fixed``: read AT's form, answer a fixed ``CON`` screen (the HTTP floor);
* ``POST /store``: read AT's form, then do what the engine does to the session store on every
  hop (take the hop lock and read the state in one round trip, then write the state back with
  the session TTL and release the lock in another) through the same store classes and calls
  as the server (``server.kv``; ``ussd.session_store.hop_lock``),
  then answer the same fixed screen. On Redis, the store's client has a pool that waits for a
  free connection (the server's ``RedisStore.from_url`` pool raises once 100 are in use).

Run: ``python -m bench.ussd_baseline STORE PORT``, STORE being ``memory`` (the in-process
store) or a ``redis://`` URL. Keys carry the server's ``somo:`` prefix, so the benchmark's
clean-up of that prefix removes them too.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator

from aiohttp import web
from redis.asyncio import BlockingConnectionPool, Redis

from server.kv import KeyValueStore, MemoryStore, RedisStore

SCREEN = "CON Q1/6: Solve: 2x + 3 = 11\n1. x = 4\n2. x = 7\n3. x = 5\n4. x = 3\n0 Back 00 Home"
# About the size of the engine's JSON state in the middle of a quiz (the stack with the
# course and quiz lists, the quiz run and the last four replies), so the store moves
# as many bytes per hop as the server's does.
STATE_BYTES = 2_000
STATE = '{"state":"' + "x" * (STATE_BYTES - 12) + '"}'
SESSION_TTL_S = 180.0
LOCK_TTL_S = 9.0
# redis-py's own default size, but a pool that waits for a free connection: the default pool
# raises MaxConnectionsError once more than 100 commands are in flight (200 sessions do that),
# and a baseline that fails is no baseline.
REDIS_CONNECTIONS = 100

store_key = web.AppKey("store", KeyValueStore)


def _plain(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/plain", charset="utf-8")


async def fixed_screen(request: web.Request) -> web.Response:
    form = await request.post()
    if not form.get("sessionId"):
        return _plain("END Sorry, we could not read your phone number.")
    return _plain(SCREEN)


async def store_hop(request: web.Request) -> web.Response:
    form = await request.post()
    session_id = form.get("sessionId")
    if not isinstance(session_id, str) or not session_id:
        return _plain("END Sorry, we could not read your phone number.")
    store = request.app[store_key]
    lock = f"ussd:l:{session_id}"
    held, _state = await store.claim_and_get(lock, ttl_s=LOCK_TTL_S, key=f"ussd:s:{session_id}")
    if not held:
        return _plain("END Sorry, Somo is busy. Please dial again.")
    await store.write({f"ussd:s:{session_id}": (STATE, SESSION_TTL_S)}, deletes=[lock])
    return _plain(SCREEN)


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(store_spec: str) -> web.Application:
    """The baseline app over the in-process store (``memory``) or Redis (a URL)."""
    app = web.Application()

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        store: KeyValueStore
        if store_spec == "memory":
            store = MemoryStore()
        else:
            pool = BlockingConnectionPool.from_url(
                store_spec, max_connections=REDIS_CONNECTIONS, timeout=5, decode_responses=True, socket_timeout=5
            )
            store = RedisStore(Redis(connection_pool=pool))
        app[store_key] = store
        yield
        await store.close()

    app.cleanup_ctx.append(store_ctx)
    app.router.add_get("/health", health)
    app.router.add_post("/fixed", fixed_screen)
    app.router.add_post("/store", store_hop)
    return app


if __name__ == "__main__":
    web.run_app(make_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
