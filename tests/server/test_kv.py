"""One contract for both key-value stores: what USSD sessions, throttles and locks rely on.

The in-process store runs on an injected clock; Redis runs for real with short TTLs, so
its expiry and its atomicity (the real guarantee behind ``set_if_absent``) are tested too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import uuid4

import pytest
import redis.asyncio

from server.kv import KeyValueStore, MemoryStore, RedisStore

# A TTL long enough that a loaded machine does not expire a key between two calls, and a
# wait comfortably past it; Redis expires with millisecond precision.
TTL_S = 0.4
PAST_TTL_S = 0.55


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StoreUnderTest:
    store: KeyValueStore
    wait: Callable[[float], Awaitable[None]]  # let this much time pass for the store


@pytest.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[StoreUnderTest]:
    if request.param == "memory":
        clock = FakeMonotonic()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        memory = MemoryStore(monotonic=clock)
        yield StoreUnderTest(memory, advance)
        await memory.close()
        return
    redis_url: str = request.getfixturevalue("redis_url")
    store = RedisStore.from_url(redis_url, prefix=f"test:{uuid4().hex}:")
    yield StoreUnderTest(store, asyncio.sleep)
    await store.close()


async def test_get_of_a_missing_key_is_none(kv: StoreUnderTest) -> None:
    assert await kv.store.get("missing") is None


async def test_set_then_get(kv: StoreUnderTest) -> None:
    await kv.store.set("session:254700000001", "menu=main", ttl_s=60)

    assert await kv.store.get("session:254700000001") == "menu=main"


async def test_set_overwrites(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "first", ttl_s=60)
    await kv.store.set("k", "second", ttl_s=60)

    assert await kv.store.get("k") == "second"


async def test_values_keep_unicode(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "Wanjirũ • Habari", ttl_s=60)

    assert await kv.store.get("k") == "Wanjirũ • Habari"


async def test_a_value_expires_after_its_ttl(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "v", ttl_s=TTL_S)
    assert await kv.store.get("k") == "v"

    await kv.wait(PAST_TTL_S)

    assert await kv.store.get("k") is None


async def test_set_renews_the_ttl(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "v1", ttl_s=TTL_S)
    await kv.wait(TTL_S / 2)
    await kv.store.set("k", "v2", ttl_s=TTL_S)
    await kv.wait(TTL_S * 0.75)  # past the first TTL, within the second

    assert await kv.store.get("k") == "v2"


async def test_set_if_absent_lets_only_the_first_writer_win(kv: StoreUnderTest) -> None:
    assert await kv.store.set_if_absent("lock", "a", ttl_s=60) is True
    assert await kv.store.set_if_absent("lock", "b", ttl_s=60) is False

    assert await kv.store.get("lock") == "a"


async def test_set_if_absent_succeeds_again_once_the_key_expired(kv: StoreUnderTest) -> None:
    assert await kv.store.set_if_absent("lock", "a", ttl_s=TTL_S) is True

    await kv.wait(PAST_TTL_S)

    assert await kv.store.set_if_absent("lock", "b", ttl_s=60) is True
    assert await kv.store.get("lock") == "b"


async def test_set_if_absent_succeeds_again_after_delete(kv: StoreUnderTest) -> None:
    assert await kv.store.set_if_absent("lock", "a", ttl_s=60) is True
    await kv.store.delete("lock")

    assert await kv.store.set_if_absent("lock", "b", ttl_s=60) is True


async def test_claim_and_get_claims_once_and_reads_the_value_either_way(kv: StoreUnderTest) -> None:
    await kv.store.set("state", "s1", ttl_s=60)

    assert await kv.store.claim_and_get("lock", ttl_s=60, key="state") == (True, "s1")
    assert await kv.store.claim_and_get("lock", ttl_s=60, key="state") == (False, "s1")
    assert await kv.store.claim_and_get("other-lock", ttl_s=60, key="missing") == (True, None)


async def test_a_claim_expires_like_set_if_absent(kv: StoreUnderTest) -> None:
    assert (await kv.store.claim_and_get("lock", ttl_s=TTL_S, key="state"))[0] is True

    await kv.wait(PAST_TTL_S)

    assert (await kv.store.claim_and_get("lock", ttl_s=60, key="state"))[0] is True


async def test_write_sets_with_their_own_ttls_and_deletes_together(kv: StoreUnderTest) -> None:
    await kv.store.set("lock", "1", ttl_s=60)

    await kv.store.write({"short": ("a", TTL_S), "long": ("b", 60)}, deletes=["lock"])

    assert (await kv.store.get("short"), await kv.store.get("long"), await kv.store.get("lock")) == ("a", "b", None)
    await kv.wait(PAST_TTL_S)
    assert (await kv.store.get("short"), await kv.store.get("long")) == (None, "b")


async def test_write_with_nothing_to_do_changes_nothing(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "v", ttl_s=60)

    await kv.store.write({})

    assert await kv.store.get("k") == "v"


async def test_incr_counts_from_one(kv: StoreUnderTest) -> None:
    counts = [await kv.store.incr("attempts", ttl_s=60) for _ in range(3)]

    assert counts == [1, 2, 3]
    assert await kv.store.get("attempts") == "3"


async def test_incr_ttl_starts_at_the_first_increment_and_is_not_extended(kv: StoreUnderTest) -> None:
    assert await kv.store.incr("attempts", ttl_s=TTL_S) == 1
    await kv.wait(TTL_S * 0.6)
    assert await kv.store.incr("attempts", ttl_s=TTL_S) == 2
    await kv.wait(TTL_S * 0.6)  # past the first increment's TTL, within a renewed one

    assert await kv.store.get("attempts") is None
    assert await kv.store.incr("attempts", ttl_s=TTL_S) == 1  # a new window


async def test_incr_on_a_plain_set_key_continues_from_its_value(kv: StoreUnderTest) -> None:
    await kv.store.set("n", "41", ttl_s=60)

    assert await kv.store.incr("n", ttl_s=60) == 42


async def test_delete(kv: StoreUnderTest) -> None:
    await kv.store.set("k", "v", ttl_s=60)

    await kv.store.delete("k")
    await kv.store.delete("k")  # deleting a missing key is fine

    assert await kv.store.get("k") is None


async def test_keys_are_independent(kv: StoreUnderTest) -> None:
    await kv.store.set("a", "1", ttl_s=60)
    await kv.store.incr("b", ttl_s=60)
    await kv.store.delete("c")

    assert await kv.store.get("a") == "1"
    assert await kv.store.get("b") == "1"


async def test_ping(kv: StoreUnderTest) -> None:
    assert await kv.store.ping() is True


async def test_concurrent_set_if_absent_has_exactly_one_winner(kv: StoreUnderTest) -> None:
    results = await asyncio.gather(*(kv.store.set_if_absent("lock", f"w{i}", ttl_s=60) for i in range(20)))

    assert results.count(True) == 1
    winner = results.index(True)
    assert await kv.store.get("lock") == f"w{winner}"


async def test_concurrent_incr_loses_no_increment(kv: StoreUnderTest) -> None:
    results = await asyncio.gather(*(kv.store.incr("hits", ttl_s=60) for _ in range(20)))

    assert sorted(results) == list(range(1, 21))


async def test_redis_stores_with_different_prefixes_do_not_see_each_other(redis_url: str) -> None:
    prefix_a, prefix_b = f"test:{uuid4().hex}:", f"test:{uuid4().hex}:"
    a = RedisStore.from_url(redis_url, prefix=prefix_a)
    b = RedisStore.from_url(redis_url, prefix=prefix_b)
    raw = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        await a.set("shared-name", "from-a", ttl_s=60)

        assert await b.get("shared-name") is None
        assert await b.set_if_absent("shared-name", "from-b", ttl_s=60) is True
        assert await a.get("shared-name") == "from-a"
        assert await raw.get(prefix_a + "shared-name") == "from-a"
        assert 0 < await raw.pttl(prefix_a + "shared-name") <= 60_000
    finally:
        await raw.delete(prefix_a + "shared-name", prefix_b + "shared-name")
        await raw.aclose()
        await a.close()
        await b.close()


async def test_memory_store_expiry_is_exact_on_its_clock() -> None:
    clock = FakeMonotonic()
    store = MemoryStore(monotonic=clock)
    await store.set("k", "v", ttl_s=10)

    clock.now += 9.999
    assert await store.get("k") == "v"
    clock.now += 0.001
    assert await store.get("k") is None
