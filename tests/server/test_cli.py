"""The real ``somo`` executable, run as an operator would: a subprocess, its exit status
and what it prints. Every failure must be one readable line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

import lms_domain.models  # noqa: F401  (registers every table on Base.metadata)
from lms_domain.assessments.models import Question, Quiz
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import SystemClock
from lms_domain.commerce.models import Price
from lms_domain.courses.models import Course
from lms_domain.db import Base, create_engine, make_sessionmaker
from lms_domain.tenancy.models import Institution, Learner, Phone, Role, User
from server.seed import DEMO_INSTITUTION_ID, clear_demo, seed_demo
from server.settings import CENTRAL_NODE_ID
from tests.factories import FAST_HASHER

SOMO = Path(sys.executable).parent / "somo"
TIMEOUT_S = 120
UNREACHABLE_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:1/x"

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def somo_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SOMO_")}
    env["SOMO_DATABASE__URL"] = database_url
    env.update(extra)
    return env


def somo(*args: str, database_url: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SOMO), *args],
        env=somo_env(database_url, **extra_env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr


def assert_one_line_failure(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"somo {command}: "), lines[0]
    return lines[0]


async def row_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {
                table.name: int(await conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0)
                for table in Base.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def run_somo(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``somo`` from an async test without blocking the event loop."""
    return await asyncio.to_thread(somo, *args, database_url=database_url, cwd=cwd)


# --- migrate and seed ---------------------------------------------------------------------


async def test_migrate_then_seed_twice_is_idempotent(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url

    assert_ok(await run_somo("migrate", database_url=url, cwd=tmp_path))
    assert_ok(await run_somo("seed", database_url=url, cwd=tmp_path))
    after_first = await row_counts(url)
    await _assert_demo_content(url)

    second = await run_somo("seed", database_url=url, cwd=tmp_path)
    assert_ok(second)
    assert "demo data is loaded" in second.stderr
    after_second = await row_counts(url)

    assert after_second == after_first
    assert after_first["users"] == 4
    assert after_first["sync_outbox"] > 0  # seeding goes through change capture like any write

    reseeded = await run_somo("seed", "--clear", database_url=url, cwd=tmp_path)
    assert_ok(reseeded)
    assert "cleared" in reseeded.stderr
    after_clear = await row_counts(url)
    # sync_outbox is left out here only: clear_demo leaks one outbox entry per run, pinned
    # by test_clear_then_seed_leaves_no_extra_outbox_entries below.
    assert {**after_clear, "sync_outbox": 0} == {**after_first, "sync_outbox": 0}
    await _assert_demo_content(url)


async def _seed_in_process(database_url: str, *, clear: bool = False) -> None:
    """The demo data with cheap password hashing (the CLI's own seed is tested above)."""
    install_change_capture()
    clock = SystemClock()
    engine = create_engine(database_url)
    makers = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL, clock=clock))
    try:
        async with makers() as session, session.begin():
            if clear:
                await clear_demo(session=session)
            await seed_demo(session=session, clock=clock, simulator_url="http://127.0.0.1:8090", hasher=FAST_HASHER)
    finally:
        await engine.dispose()


async def test_clear_then_seed_leaves_no_extra_outbox_entries(database_url: str) -> None:
    await _seed_in_process(database_url)
    seeded = await row_counts(database_url)

    await _seed_in_process(database_url, clear=True)

    assert await row_counts(database_url) == seeded


async def _assert_demo_content(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            institution = (
                await conn.execute(
                    sa.select(Institution.name, Institution.code).where(Institution.id == DEMO_INSTITUTION_ID)
                )
            ).one()
            assert tuple(institution) == ("Demo School", "DEMO")

            learners = (await conn.execute(sa.select(Learner.display_name, Learner.phone_id))).all()
            assert len(learners) == 4
            assert await conn.scalar(sa.select(sa.func.count()).select_from(Phone)) == 3
            per_phone = sorted(
                int(n) for n in await conn.scalars(sa.select(sa.func.count(Learner.id)).group_by(Learner.phone_id))
            )
            assert per_phone == [1, 1, 2]  # siblings share a parent's phone

            course = (
                await conn.execute(sa.select(Course.id, Course.title_sw).where(Course.title_en == "Form 2 Mathematics"))
            ).one()
            assert course.title_sw
            quiz = (
                await conn.execute(
                    sa.select(Quiz.id, Quiz.title_en, Quiz.title_sw).where(
                        Quiz.course_id == course.id, Quiz.is_final.is_(True)
                    )
                )
            ).one()
            assert quiz.title_en
            assert quiz.title_sw
            questions = (
                await conn.execute(sa.select(Question.prompt_en, Question.prompt_sw).where(Question.quiz_id == quiz.id))
            ).all()
            assert len(questions) >= 5
            assert all(q.prompt_en and q.prompt_sw and q.prompt_en != q.prompt_sw for q in questions)

            prices = sorted(int(p) for p in await conn.scalars(sa.select(Price.amount_minor)))
            assert prices == [30000, 300000]
            roles = set(await conn.scalars(sa.select(User.role)))
            assert Role.PLATFORM_ADMIN in roles
    finally:
        await engine.dispose()


@sqlite_only
def test_seed_refuses_production(database_url: str, tmp_path: Path) -> None:
    secrets = {
        name: f"real-{name.lower()}-0123456789abcdefghijklmnopqrstuvwxyz"
        for name in (
            "SOMO_SECURITY__SECRET_KEY",
            "SOMO_PAYMENTS__MPESA_CONSUMER_KEY",
            "SOMO_PAYMENTS__MPESA_CONSUMER_SECRET",
            "SOMO_PAYMENTS__MPESA_PASSKEY",
            "SOMO_PAYMENTS__AIRTEL_CLIENT_ID",
            "SOMO_PAYMENTS__AIRTEL_CLIENT_SECRET",
            "SOMO_PAYMENTS__MPESA_SECURITY_CREDENTIAL",
            "SOMO_PAYMENTS__AIRTEL_CALLBACK_HASH_SECRET",
            "SOMO_NOTIFICATIONS__AT_API_KEY",
            "SOMO_NOTIFICATIONS__ACS_CONNECTION_STRING",
        )
    }

    result = somo("seed", database_url=database_url, cwd=tmp_path, SOMO_ENVIRONMENT="production", **secrets)

    line = assert_one_line_failure(result, "seed")
    assert "production" in line


# --- failures are one line ----------------------------------------------------------------


def test_seed_against_an_unreachable_database_fails_in_one_line(tmp_path: Path) -> None:
    result = somo("seed", database_url=UNREACHABLE_POSTGRES, cwd=tmp_path)

    line = assert_one_line_failure(result, "seed")
    assert "127.0.0.1" in line


def test_seed_into_an_sqlite_folder_that_cannot_be_created_fails_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'sub' / 'somo.db'}"

    assert "a-file" in assert_one_line_failure(somo("seed", database_url=url, cwd=tmp_path), "seed")


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_an_sqlite_folder_that_cannot_be_created_fails_in_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    url = f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'sub' / 'somo.db'}"

    args = ["--port", str(_free_port())] if command == "serve" else []

    result = somo(command, *args, database_url=url, cwd=tmp_path)

    assert "a-file" in assert_one_line_failure(result, command)


def test_a_malformed_database_url_names_the_variable(tmp_path: Path) -> None:
    result = somo("serve", database_url="mysql://nope/x", cwd=tmp_path)

    line = assert_one_line_failure(result, "serve")
    assert "SOMO_DATABASE__URL" in line


# --- create-admin -------------------------------------------------------------------------


async def _users(database_url: str) -> dict[str, tuple[Role, object, str]]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(sa.select(User.username, User.role, User.institution_id, User.password_hash))
            ).all()
    finally:
        await engine.dispose()
    return {r.username: (r.role, r.institution_id, r.password_hash) for r in rows}


@sqlite_only
async def test_create_admin(database_url: str, tmp_path: Path) -> None:
    created = await run_somo(
        "create-admin", "--username", "Ops", "--password", "long-enough-pass", database_url=database_url, cwd=tmp_path
    )
    assert_ok(created)
    users = await _users(database_url)
    role, institution_id, password_hash = users["ops"]
    assert role is Role.PLATFORM_ADMIN
    assert institution_id is None
    assert password_hash.startswith("$argon2id$")
    assert "long-enough-pass" not in password_hash

    again = await run_somo(
        "create-admin", "--username", "ops", "--password", "another-long-pass", database_url=database_url, cwd=tmp_path
    )
    assert "ops" in assert_one_line_failure(again, "create-admin")
    assert (await _users(database_url))["ops"] == users["ops"]  # untouched

    short = await run_somo(
        "create-admin", "--username", "shorty", "--password", "short", database_url=database_url, cwd=tmp_path
    )
    assert "8 characters" in assert_one_line_failure(short, "create-admin")

    await _seed_in_process(database_url)
    school = await run_somo(
        "create-admin",
        "--username",
        "bursar",
        "--password",
        "long-enough-pass",
        "--institution",
        "demo",
        database_url=database_url,
        cwd=tmp_path,
    )
    assert_ok(school)

    users = await _users(database_url)
    assert "shorty" not in users
    assert users["bursar"][:2] == (Role.INSTITUTION_ADMIN, DEMO_INSTITUTION_ID)


@sqlite_only
def test_create_admin_for_an_unknown_institution_fails_in_one_line(database_url: str, tmp_path: Path) -> None:
    result = somo(
        "create-admin",
        "--username",
        "x-admin",
        "--password",
        "long-enough-pass",
        "--institution",
        "NOPE",
        database_url=database_url,
        cwd=tmp_path,
    )

    assert "NOPE" in assert_one_line_failure(result, "create-admin")


@sqlite_only
def test_create_admin_without_a_password_and_no_terminal_fails(database_url: str, tmp_path: Path) -> None:
    result = somo("create-admin", "--username", "nopass", database_url=database_url, cwd=tmp_path)

    assert "SOMO_ADMIN_PASSWORD" in assert_one_line_failure(result, "create-admin")


# --- the real start-up path ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@sqlite_only
async def test_serve_starts_answers_and_stops_on_sigint(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        str(SOMO),
        "serve",
        "--port",
        str(port),
        env=somo_env(database_url),
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, "somo serve exited before it answered"
                try:
                    async with http.get(f"{base}/health") as health:
                        if health.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert time.monotonic() < deadline, "somo serve did not answer /health within 30 s"
                await asyncio.sleep(0.1)
            async with http.get(f"{base}/ready", headers={"X-Request-ID": "startup-test"}) as ready:
                assert ready.status == 200, await ready.text()
                assert (await ready.json())["status"] == "ok"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            _, stderr_bytes = await asyncio.wait_for(process.communicate(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
            pytest.fail("somo serve did not stop within 10 s of SIGINT")

    assert await process.wait() == 0
    stderr = stderr_bytes.decode()
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    listening = [r for r in records if r["msg"] == "listening"]
    assert listening
    assert listening[0]["url"] == f"http://127.0.0.1:{port}"
    requests = [r for r in records if r["msg"] == "request" and r.get("path") == "/ready"]
    assert requests
    assert requests[0]["request_id"] == "startup-test"
    assert requests[0]["status"] == 200
