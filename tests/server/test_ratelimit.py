"""Token buckets, in process and in Redis, and the middleware's 429s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from server.app import create_app
from server.ratelimit import Buckets, MemoryBuckets, RedisBuckets
from server.settings import DatabaseSettings, RateLimitSettings, Settings


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def buckets(request: pytest.FixtureRequest) -> AsyncIterator[Buckets]:
    if request.param == "memory":
        yield MemoryBuckets()
        return
    client = Redis.from_url(request.getfixturevalue("redis_url"))
    yield RedisBuckets(client, prefix=f"test:rl:{uuid.uuid4().hex}:")
    await client.aclose()


async def test_burst_then_refuse_with_a_wait(buckets: Buckets) -> None:
    waits = [await buckets.take("k", rate=1.0, burst=3) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.5 < waits[3] <= 1.0
    assert await buckets.take("other", rate=1.0, burst=3) == 0.0  # keys are independent


async def test_refills_over_time(buckets: Buckets) -> None:
    for _ in range(2):
        await buckets.take("k", rate=10.0, burst=2)
    assert await buckets.take("k", rate=10.0, burst=2) > 0
    await asyncio.sleep(0.25)
    assert await buckets.take("k", rate=10.0, burst=2) == 0.0


async def test_concurrent_takes_never_exceed_the_burst(buckets: Buckets) -> None:
    waits = await asyncio.gather(*(buckets.take("hot", rate=0.01, burst=5) for _ in range(40)))
    assert sum(1 for w in waits if w == 0.0) == 5


async def test_memory_buckets_follow_the_clock() -> None:
    clock = FakeMonotonic()
    buckets = MemoryBuckets(clock)
    assert await buckets.take("k", rate=2.0, burst=1) == 0.0
    assert await buckets.take("k", rate=2.0, burst=1) == pytest.approx(0.5)
    clock.now += 0.5
    assert await buckets.take("k", rate=2.0, burst=1) == 0.0


@pytest.fixture
async def limited_client(database_url: str, aiohttp_client: Any) -> TestClient:
    settings = Settings(
        database=DatabaseSettings(url=database_url),
        rate_limit=RateLimitSettings(per_client_rps=0.5, per_client_burst=3, per_token_rps=0.5, per_token_burst=2),
    )
    client: TestClient = await aiohttp_client(create_app(settings))
    return client


async def test_api_answers_429_with_retry_after(limited_client: TestClient) -> None:
    statuses = [(await limited_client.get("/api/v1/courses")).status for _ in range(3)]
    assert statuses == [401, 401, 401]  # within the burst: the handler runs (and wants a token)
    response = await limited_client.get("/api/v1/courses")
    assert response.status == 429
    assert response.content_type == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["code"] == "too_many_requests"


async def test_paths_outside_the_api_are_not_limited(limited_client: TestClient) -> None:
    # Burst 3 per client: ten calls would be refused if /health went through the limiter.
    for _ in range(10):
        assert (await limited_client.get("/health")).status == 200
        assert (await limited_client.get("/api/docs")).status == 200


async def test_a_token_has_its_own_tighter_bucket(limited_client: TestClient) -> None:
    headers = {"Authorization": "Bearer some-token"}
    statuses = [(await limited_client.get("/api/v1/courses", headers=headers)).status for _ in range(3)]
    assert statuses[:2] == [401, 401] and statuses[2] == 429


async def test_one_token_is_one_bucket_however_the_header_is_spelled(limited_client: TestClient) -> None:
    spellings = ["Bearer tok-1", "bearer tok-1", "BEARER  tok-1", "Bearer tok-1 "]
    statuses = [(await limited_client.get("/api/v1/courses", headers={"Authorization": h})).status for h in spellings]
    assert statuses.count(429) == 2  # burst 2 for the token, whatever the spelling
