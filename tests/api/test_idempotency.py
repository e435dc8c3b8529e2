"""Idempotency keys, Stripe's semantics, on a real idempotent POST (enrollments)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from lms_domain.clock import FixedClock
from lms_domain.courses.models import Enrollment
from lms_domain.platform.models import IdempotencyKey
from tests.api.conftest import World, login
from tests.factories import make_course


async def _course(world: World) -> str:
    async with world.makers() as session, session.begin():
        fx = await make_course(session, institution=world.a.institution)
    return str(fx.course.id)


async def _enrollments(world: World) -> int:
    async with world.makers() as session:
        return int(await session.scalar(sa.select(sa.func.count()).select_from(Enrollment)) or 0)


async def test_replay_returns_the_stored_response(world: World) -> None:
    course_id = await _course(world)
    headers = {"Idempotency-Key": "k-replay", **world.auth(world.a.tokens["learner"])}
    first = await world.client.post("/api/v1/enrollments", json={"course_id": course_id}, headers=headers)
    second = await world.client.post("/api/v1/enrollments", json={"course_id": course_id}, headers=headers)
    assert first.status == second.status == 201
    assert "Idempotent-Replayed" not in first.headers and second.headers["Idempotent-Replayed"] == "true"
    assert await first.json() == await second.json()
    assert await _enrollments(world) == 1


async def test_same_key_with_another_body_is_409(world: World) -> None:
    course_id = await _course(world)
    other_id = await _course(world)
    headers = {"Idempotency-Key": "k-body", **world.auth(world.a.tokens["learner"])}
    await world.client.post("/api/v1/enrollments", json={"course_id": course_id}, headers=headers)
    response = await world.client.post("/api/v1/enrollments", json={"course_id": other_id}, headers=headers)
    assert response.status == 409 and (await response.json())["code"] == "idempotency_key_reused"
    assert await _enrollments(world) == 1


async def test_failures_are_not_stored(world: World) -> None:
    course_id = await _course(world)
    headers = {"Idempotency-Key": "k-fail", **world.auth(world.a.tokens["learner"])}
    invalid = await world.client.post("/api/v1/enrollments", json={"course_id": "nope"}, headers=headers)
    assert invalid.status == 422
    missing = await world.client.post(
        "/api/v1/enrollments", json={"course_id": "00000000-0000-7000-8000-000000000009"}, headers=headers
    )
    assert missing.status == 404  # a domain failure: the key is released again
    async with world.makers() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(IdempotencyKey)) == 0
    ok = await world.client.post("/api/v1/enrollments", json={"course_id": course_id}, headers=headers)
    assert ok.status == 201  # a corrected retry with the same key runs


async def test_keys_are_scoped_per_caller(world: World) -> None:
    course_id = await _course(world)
    key = {"Idempotency-Key": "shared-key"}
    a = await world.client.post(
        "/api/v1/enrollments", json={"course_id": course_id}, headers={**key, **world.auth(world.a.tokens["learner"])}
    )
    staff = await world.client.post(
        "/api/v1/enrollments",
        json={"course_id": course_id, "learner_id": str(world.a.learner.id)},
        headers={**key, **world.auth(world.a.tokens["instructor"])},
    )
    assert a.status == 201 and staff.status == 201 and "Idempotent-Replayed" not in staff.headers


async def test_keys_expire_after_24_hours(world: World, api_clock: FixedClock) -> None:
    course_id = await _course(world)

    async def post() -> tuple[int, str | None]:
        token = await login(world.client, "0711000001")  # access tokens live 15 minutes
        response = await world.client.post(
            "/api/v1/enrollments",
            json={"course_id": course_id},
            headers={"Idempotency-Key": "k-old", **world.auth(token)},
        )
        return response.status, response.headers.get("Idempotent-Replayed")

    assert await post() == (201, None)
    api_clock.advance(timedelta(hours=23))
    assert await post() == (201, "true")
    api_clock.advance(timedelta(hours=2))
    assert await post() == (201, None)  # expired: it ran again (enrolling is idempotent anyway)


async def test_concurrent_duplicates_are_409_or_replayed(world: World) -> None:
    course_id = await _course(world)
    headers = {"Idempotency-Key": "k-race", **world.auth(world.a.tokens["learner"])}

    async def post() -> int:
        response = await world.client.post("/api/v1/enrollments", json={"course_id": course_id}, headers=headers)
        body = await response.json()
        assert response.status == 201 or body["code"] == "idempotency_in_progress"
        return response.status

    statuses = await asyncio.gather(*(post() for _ in range(20)))
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}
    assert await _enrollments(world) == 1


async def test_malformed_keys_are_refused(world: World) -> None:
    course_id = await _course(world)
    for key in ("x" * 256, "tab\there", "non-ascii-ü"):
        response = await world.client.post(
            "/api/v1/enrollments",
            json={"course_id": course_id},
            headers={"Idempotency-Key": key, **world.auth(world.a.tokens["learner"])},
        )
        assert response.status == 422, key


async def test_the_same_parameters_spelled_differently_replay(world: World) -> None:
    course_id = await _course(world)
    headers = {
        "Idempotency-Key": "k-spelling",
        "Content-Type": "application/json",
        **world.auth(world.a.tokens["learner"]),
    }
    first = await world.client.post("/api/v1/enrollments", data=f'{{"course_id": "{course_id}"}}', headers=headers)
    second = await world.client.post("/api/v1/enrollments", data=f'{{ "course_id" :"{course_id}" }}\n', headers=headers)
    assert first.status == second.status == 201 and second.headers["Idempotent-Replayed"] == "true"
