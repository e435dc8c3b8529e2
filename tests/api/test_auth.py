"""Sign in, refresh, sign out, throttling."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from lms_domain.clock import FixedClock
from lms_domain.tenancy.models import User
from tests.api.conftest import PASSWORD, World


async def test_sign_in_by_username_or_phone(world: World) -> None:
    status, body = await world.call("GET", "/api/v1/courses", world.a.tokens["learner"])
    assert status == 200 and body["items"] == []
    # The learner's phone, typed the local way, works as a login too.
    status, body = await world.call("POST", "/api/v1/auth/token", json={"login": "0711000001", "password": PASSWORD})
    assert status == 200 and body["token_type"] == "bearer" and body["expires_in"] == 900


async def test_wrong_password_is_401_problem(world: World) -> None:
    status, body = await world.call("POST", "/api/v1/auth/token", json={"login": "root", "password": "nope"})
    assert status == 401 and body["code"] == "invalid_credentials"
    status, body = await world.call("POST", "/api/v1/auth/token", json={"login": "ghost", "password": "nope"})
    assert status == 401 and body["code"] == "invalid_credentials"


async def test_no_or_bad_token_is_401(world: World) -> None:
    response = await world.client.get("/api/v1/courses")
    assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    status, body = await world.call("GET", "/api/v1/courses", "not-a-token")
    assert status == 401 and body["code"] == "invalid_token"


async def test_access_token_expires(world: World, api_clock: FixedClock) -> None:
    token = world.a.tokens["instructor"]
    api_clock.advance(timedelta(minutes=16))
    status, body = await world.call("GET", "/api/v1/courses", token)
    assert status == 401 and body["code"] == "token_expired"


async def test_failed_logins_slow_down_then_lock(world: World, api_clock: FixedClock) -> None:
    bad = {"login": "root", "password": "wrong-password"}
    statuses = []
    for _ in range(4):
        statuses.append((await world.client.post("/api/v1/auth/token", json=bad)).status)
    assert statuses == [401, 401, 401, 401]
    response = await world.client.post("/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    assert response.status == 429 and int(response.headers["Retry-After"]) >= 2  # even the right password waits
    for _ in range(6):  # keep failing, each time after the wait, until the lock
        api_clock.advance(timedelta(minutes=3))
        await world.client.post("/api/v1/auth/token", json=bad)
    api_clock.advance(timedelta(minutes=3))
    response = await world.client.post("/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    assert response.status == 429 and int(response.headers["Retry-After"]) > 60
    api_clock.advance(timedelta(minutes=15))
    response = await world.client.post("/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    assert response.status == 200


async def test_refresh_rotates_and_reuse_revokes_the_family(world: World) -> None:
    status, pair = await world.call("POST", "/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    first = pair["refresh_token"]
    status, rotated = await world.call("POST", "/api/v1/auth/refresh", json={"refresh_token": first})
    assert status == 200 and rotated["refresh_token"] != first
    status, body = await world.call("POST", "/api/v1/auth/refresh", json={"refresh_token": first})
    assert status == 401 and body["code"] == "refresh_token_reused"
    # The replay revoked the newer token of the same family too.
    status, body = await world.call("POST", "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert status == 401


async def test_logout_revokes(world: World) -> None:
    status, pair = await world.call("POST", "/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    status, _ = await world.call("POST", "/api/v1/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert status == 204
    status, body = await world.call("POST", "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert status == 401


async def test_malformed_bodies_are_422_with_fields(world: World) -> None:
    status, body = await world.call("POST", "/api/v1/auth/token", json={"login": ""})
    assert status == 422 and body["code"] == "validation_error"
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "login"), ("body", "password")}
    response = await world.client.post(
        "/api/v1/auth/token", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 422 and (await response.json())["code"] == "invalid_json"
    response = await world.client.post("/api/v1/auth/token", data="login=x", headers={"Content-Type": "text/plain"})
    assert response.status == 415


async def test_a_suspended_institution_cannot_sign_in(world: World) -> None:
    path = f"/api/v1/institutions/{world.a.institution.id}"
    status, _ = await world.call("PATCH", path, world.platform_token, json={"is_active": False})
    assert status == 200
    status, body = await world.call("POST", "/api/v1/auth/token", json={"login": "0711000001", "password": PASSWORD})
    assert status == 401 and body["code"] == "invalid_credentials"
    status, _ = await world.call("POST", "/api/v1/auth/token", json={"login": "0711000002", "password": PASSWORD})
    assert status == 200  # the other school is unaffected


async def test_parallel_guesses_are_all_counted(world: World) -> None:
    bad = {"login": "root", "password": "wrong-password"}
    statuses = await asyncio.gather(*(world.client.post("/api/v1/auth/token", json=bad) for _ in range(12)))
    assert {r.status for r in statuses} <= {401, 429}
    async with world.makers() as session:
        failed = await session.scalar(sa.select(User.failed_logins).where(User.username == "root"))
    # Every guess that reached the password check was counted (the rest were refused at 429).
    assert failed == sum(1 for r in statuses if r.status == 401)
    response = await world.client.post("/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    assert response.status == 429


async def test_parallel_refreshes_of_one_token_yield_one_pair(world: World) -> None:
    status, pair = await world.call("POST", "/api/v1/auth/token", json={"login": "root", "password": PASSWORD})
    body = {"refresh_token": pair["refresh_token"]}
    answers = await asyncio.gather(*(world.client.post("/api/v1/auth/refresh", json=body) for _ in range(5)))
    assert sorted(r.status for r in answers) == [200, 401, 401, 401, 401]
    winner = next(r for r in answers if r.status == 200)
    # The replays revoked the family, so even the winner's new token is dead.
    status, _ = await world.call(
        "POST", "/api/v1/auth/refresh", json={"refresh_token": (await winner.json())["refresh_token"]}
    )
    assert status == 401


async def test_a_suspended_institution_cannot_refresh(world: World) -> None:
    status, pair = await world.call("POST", "/api/v1/auth/token", json={"login": "0711000001", "password": PASSWORD})
    await world.call(
        "PATCH", f"/api/v1/institutions/{world.a.institution.id}", world.platform_token, json={"is_active": False}
    )
    status, body = await world.call("POST", "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert status == 401
