"""The scheduled jobs' plumbing: one run at a time across processes (a Postgres advisory lock,
a Redis lock, an in-process lock), the schedule APScheduler is given, and ``somo jobs``."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from lms_domain.db import create_engine
from server.joblock import JobLocks
from server.jobs import JOBS
from server.scheduler import build_scheduler
from server.settings import DatabaseSettings, Settings
from server.worker import job_context
from tests.server.test_cli import assert_ok, run_somo, somo


async def _contended(first: JobLocks, second: JobLocks) -> None:
    async with first.hold("dunning") as got:
        assert got
        async with second.hold("dunning") as other:
            assert not other  # the second process skips: the first is running it
        async with second.hold("renewals") as unrelated:
            assert unrelated  # another job is not blocked
    async with second.hold("dunning") as after:
        assert after  # released at the end of the run


@pytest.mark.backend_only("postgres")
async def test_a_postgres_advisory_lock_lets_one_process_run_a_job(engine: AsyncEngine, database_url: str) -> None:
    other = create_engine(database_url)  # its own pool: another process's sessions
    try:
        await _contended(JobLocks(engine), JobLocks(other))
        assert JobLocks(engine).kind == "postgres-advisory"
    finally:
        await other.dispose()


@pytest.mark.backend_only("sqlite")
async def test_a_redis_lock_lets_one_process_run_a_job(engine: AsyncEngine, redis_url: str) -> None:
    one, two = Redis.from_url(redis_url), Redis.from_url(redis_url)
    try:
        await one.delete("somo:somo-job:dunning", "somo:somo-job:renewals")
        await _contended(JobLocks(engine, one), JobLocks(engine, two))
        assert JobLocks(engine, one).kind == "redis"
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.backend_only("sqlite")
async def test_without_postgres_or_redis_the_lock_is_the_process(engine: AsyncEngine) -> None:
    locks = JobLocks(engine)
    await _contended(locks, locks)
    assert locks.kind == "process"


@pytest.mark.backend_only("sqlite")
async def test_the_scheduler_has_every_job_once_a_time(database_url: str) -> None:
    settings = Settings(database=DatabaseSettings(url=database_url))
    async with job_context(settings) as ctx:
        scheduler = build_scheduler(ctx)
        scheduler.start(paused=True)  # job defaults apply once it starts
        jobs = {job.id: job for job in scheduler.get_jobs()}
        scheduler.shutdown(wait=False)
    assert set(jobs) == set(JOBS)
    assert str(jobs["payments-poll"].trigger) == "interval[0:00:30]"  # SOMO_PAYMENTS__POLL_INTERVAL_S
    assert str(jobs["notifications"].trigger) == "interval[0:00:10]"  # SOMO_NOTIFICATIONS__SEND_INTERVAL_S
    assert "minute='5'" in str(jobs["renewals"].trigger) and "hour=" not in str(jobs["renewals"].trigger)
    assert "hour='1,7,13,19', minute='20'" in str(jobs["dunning"].trigger)
    # Every job runs within its period of the scheduler starting, however often it restarts.
    assert jobs["notifications"].next_run_time - datetime.now(UTC) <= timedelta(seconds=10)
    assert jobs["renewals"].next_run_time - datetime.now(UTC) <= timedelta(hours=1)
    assert "hour='2', minute='30'" in str(jobs["reconciliation"].trigger)
    assert "hour='3', minute='30'" in str(jobs["cleanup"].trigger)
    assert "day_of_week='sun', hour='17'" in str(jobs["progress-digest"].trigger)
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())


@pytest.mark.backend_only("sqlite")
async def test_frequent_jobs_repeat_quietly_and_an_interval_of_0_switches_one_off(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from server.scheduler import running
    from server.settings import NotificationsSettings, PaymentsSettings

    settings = Settings(
        database=DatabaseSettings(url=database_url),
        notifications=NotificationsSettings(send_interval_s=0.05),
        payments=PaymentsSettings(poll_interval_s=0),
    )
    caplog.set_level(logging.DEBUG, logger="somo.jobs")
    async with job_context(settings) as ctx, running(ctx) as scheduler:
        assert scheduler.get_job("payments-poll") is None  # switched off
        await asyncio.sleep(0.4)
    runs = [r for r in caplog.records if r.getMessage() == "job finished" and r.__dict__["job"] == "notifications"]
    assert len(runs) >= 3  # every 50 ms
    assert {r.levelno for r in runs} == {logging.DEBUG}  # nothing to send: not worth an info line


@pytest.mark.backend_only("sqlite")
async def test_a_job_run_logs_one_summary_line(database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    from server.jobs import run_job

    settings = Settings(database=DatabaseSettings(url=database_url))
    caplog.set_level(logging.INFO, logger="somo.jobs")
    async with job_context(settings) as ctx:
        summary = await run_job(ctx, "cleanup")
        async with ctx.locks.hold("cleanup"):
            assert await run_job(ctx, "cleanup") is None  # running elsewhere: skipped
    assert summary == {"idempotency_keys": 0, "refresh_tokens": 0, "intents_expired": 0}
    finished = [r for r in caplog.records if r.getMessage() == "job finished"]
    assert len(finished) == 1 and finished[0].__dict__["job"] == "cleanup"
    assert any(r.getMessage() == "job skipped: running elsewhere" for r in caplog.records)


def test_somo_jobs_list_names_every_job_and_its_schedule(tmp_path: Path) -> None:
    result = somo("jobs", "list", database_url="sqlite+aiosqlite:///unused.db", cwd=tmp_path)
    assert_ok(result)
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(JOBS)
    assert lines[2].split(None, 1) == ["renewals", "hourly at :05"]
    assert lines[1].split(None, 1) == ["notifications", "every SOMO_NOTIFICATIONS__SEND_INTERVAL_S (10 s)"]


@pytest.mark.backend_only("sqlite")
async def test_somo_jobs_run_runs_one_now(database_url: str, tmp_path: Path) -> None:
    result = await run_somo("jobs", "run", "renewals", database_url=database_url, cwd=tmp_path)
    assert_ok(result)
    name, _, summary = result.stdout.strip().partition(": ")
    assert name == "renewals" and json.loads(summary) == {"due": 0, "invited": 0, "queued": 0, "suppressed": 0}
    unknown = await asyncio.to_thread(somo, "jobs", "run", "payroll", database_url=database_url, cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "somo jobs: no job called 'payroll'; there are: payments-poll, notifications, renewals, dunning, "
        "reconciliation, cleanup, progress-digest, queued-renewals, sync-tombstones"
    )


@pytest.mark.backend_only("sqlite")
async def test_somo_worker_runs_the_scheduler_until_told_to_stop(database_url: str, tmp_path: Path) -> None:
    import signal

    from tests.server.test_cli import SOMO, somo_env

    proc = await asyncio.create_subprocess_exec(
        str(SOMO),
        "worker",
        env=somo_env(database_url, SOMO_LOG_JSON="true"),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[dict[str, object]] = []
    try:
        async with asyncio.timeout(60):
            while not any(line.get("msg") == "worker running" for line in lines):
                raw = await proc.stderr.readline()
                assert raw, "the worker exited early"
                if raw.startswith(b"{"):
                    lines.append(json.loads(raw))
        started = next(line for line in lines if line.get("msg") == "scheduler started")
        assert set(started["jobs"]) == set(JOBS)  # type: ignore[arg-type]
        assert started["lock"] == "process"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    assert b"worker stopped" in err and b"Traceback" not in err
