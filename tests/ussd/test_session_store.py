"""The hop hold: one round trip to take it with the state, one to leave the hop's writes and
release it, and nothing written by a hop that fails."""

from __future__ import annotations

import pytest

from server.kv import MemoryStore
from ussd.session_store import hop_lock, session_key

LOCK = "ussd:l:s1"


async def test_a_hop_reads_the_state_as_it_takes_the_hold_and_writes_as_it_releases() -> None:
    store = MemoryStore()
    await store.set(session_key("s1"), "before", ttl_s=60)

    async with hop_lock(store, "s1", wait_s=1, hold_s=10) as hold:
        assert (hold.held, hold.raw) == (True, "before")
        assert await store.get(LOCK) == "1"
        hold.writes[session_key("s1")] = ("after", 60)
        hold.writes["ussd:r:+254711000001:l1"] = ("resume", 600)
        assert await store.get(session_key("s1")) == "before"  # nothing written until the release

    assert await store.get(session_key("s1")) == "after"
    assert await store.get("ussd:r:+254711000001:l1") == "resume"
    assert await store.get(LOCK) is None


async def test_a_hop_that_raises_writes_nothing_and_releases_the_hold() -> None:
    store = MemoryStore()
    await store.set(session_key("s1"), "before", ttl_s=60)

    async def failing_hop() -> None:
        async with hop_lock(store, "s1", wait_s=1, hold_s=10) as hold:
            hold.writes[session_key("s1")] = ("after", 60)
            raise RuntimeError("the hop failed")

    with pytest.raises(RuntimeError):
        await failing_hop()

    assert await store.get(session_key("s1")) == "before"
    assert await store.get(LOCK) is None


async def test_a_held_session_is_busy_for_a_second_hop_until_released() -> None:
    store = MemoryStore()

    async with hop_lock(store, "s1", wait_s=1, hold_s=10) as first:
        assert first.held
        async with hop_lock(store, "s1", wait_s=0.05, hold_s=10) as second:
            assert not second.held
        assert await store.get(LOCK) == "1"  # the busy hop did not release the first one's hold

    async with hop_lock(store, "s1", wait_s=0.05, hold_s=10) as third:
        assert third.held


class FailingWrites(MemoryStore):
    async def write(self, sets: object, deletes: object = ()) -> None:  # type: ignore[override]
        raise ConnectionError("redis went away")


async def test_when_the_writes_fail_the_hold_is_still_released() -> None:
    store = FailingWrites()

    async def hop() -> None:
        async with hop_lock(store, "s1", wait_s=1, hold_s=10) as hold:
            hold.writes[session_key("s1")] = ("after", 60)

    with pytest.raises(ConnectionError):
        await hop()

    assert await store.get(LOCK) is None
