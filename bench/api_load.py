"""API load benchmark: a read (course list) and a write (lesson progress) against one
`somo serve` process, compared with a bare aiohttp + raw-driver baseline measured in the
same run on the same database. Target: at least 0.5 of the baseline's requests per second
with auth, tenancy, validation, logging and change capture on.

    python -m bench.api_load [--seconds 10] [--concurrency 32] [--backends sqlite postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from rich.console import Console
from rich.table import Table

from bench.databases import drop_database, fresh_database
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import SystemClock
from lms_domain.courses.models import Course, Lesson, LessonProgress, Section
from lms_domain.courses.service import enroll
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.ids import natural_id, new_id
from lms_domain.security import Hasher
from lms_domain.tenancy.models import Role
from lms_domain.tenancy.service import create_institution, create_learner, create_user
from server.migrate import upgrade
from server.settings import CENTRAL_NODE_ID

PASSWORD = "bench-password-1"


@dataclass
class Fixture:
    institution_id: str
    learner_id: str
    lesson_ids: list[str]
    baseline_lessons: list[str] = field(default_factory=list)


@dataclass
class Result:
    backend: str
    scenario: str
    server: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=100)[int(q) - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def prepare(url: str, courses: int = 50, lessons: int = 20) -> Fixture:
    install_change_capture()
    engine = create_engine(url)
    makers = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL))
    clock = SystemClock()
    cheap = Hasher(time_cost=1, memory_cost_kib=64)
    async with makers() as session, session.begin():
        inst = await create_institution(session=session, name="Bench School", code="BENCH")
        user = await create_user(
            session=session,
            username="bench",
            password=PASSWORD,
            role=Role.LEARNER,
            institution_id=inst.id,
            hasher=cheap,
        )
        learner = await create_learner(
            session=session, institution_id=inst.id, display_name="Bench Learner", user_id=user.id, hasher=cheap
        )
        for n in range(courses):
            session.add(
                Course(
                    id=new_id(),
                    institution_id=inst.id,
                    slug=f"course-{n}",
                    title_en=f"Course {n}",
                    title_sw=f"Kozi {n}",
                    summary_en="A course.",
                    is_published=True,
                )
            )
        course = Course(id=new_id(), institution_id=inst.id, slug="progress", title_en="Progress", is_published=True)
        session.add(course)
        await session.flush()
        section = Section(id=new_id(), institution_id=inst.id, course_id=course.id, title_en="S")
        session.add(section)
        await session.flush()
        lesson_rows = [
            Lesson(
                id=new_id(),
                institution_id=inst.id,
                section_id=section.id,
                course_id=course.id,
                position=i,
                title_en=f"L{i}",
            )
            for i in range(lessons)
        ]
        session.add_all(lesson_rows)
        await session.flush()
        await enroll(session=session, learner_id=learner.id, course_id=course.id, clock=clock)
        now = clock.now()
        for lesson in lesson_rows:  # existing rows, so both servers update rather than insert
            session.add(
                LessonProgress(
                    id=natural_id("lesson_progress", learner.id, lesson.id),
                    institution_id=inst.id,
                    learner_id=learner.id,
                    lesson_id=lesson.id,
                    course_id=course.id,
                    percent=1,
                    first_seen_at=now,
                    last_seen_at=now,
                )
            )
        # SQLite stores UUIDs as 32 hex digits: the raw-driver baseline must use that form.
        form = str if url.startswith("postgresql") else (lambda u: u.hex)
        fixture = Fixture(form(inst.id), form(learner.id), [str(lesson.id) for lesson in lesson_rows])
        fixture.baseline_lessons = [form(lesson.id) for lesson in lesson_rows]
    await engine.dispose()
    return fixture


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


async def run_load(
    make_request: Any, *, seconds: float, concurrency: int, warmup: float = 1.5
) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    errors = 0
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(until: float, record: bool) -> None:
            nonlocal errors, done
            while time.monotonic() < until:
                started = time.perf_counter()
                async with make_request(http) as response:
                    await response.read()
                    ok = response.status < 400
                if record:
                    latencies.append((time.perf_counter() - started) * 1000)
                    done += 1
                    errors += 0 if ok else 1

        await asyncio.gather(*(worker(time.monotonic() + warmup, False) for _ in range(concurrency)))
        await asyncio.gather(*(worker(time.monotonic() + seconds, True) for _ in range(concurrency)))
    return done, errors, latencies


async def measure(backend: str, url: str, fx: Fixture, seconds: float, concurrency: int) -> list[Result]:
    results: list[Result] = []
    somo_port, base_port = free_port(), free_port()
    env = {
        **os.environ,
        "SOMO_DATABASE__URL": url,
        "SOMO_RATE_LIMIT__ENABLED": "false",
        "SOMO_HTTP__PORT": str(somo_port),
    }
    somo = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    baseline = subprocess.Popen(
        [sys.executable, "-m", "bench.baseline_app", url, str(base_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await wait_ready(f"http://127.0.0.1:{somo_port}/health")
        await wait_ready(f"http://127.0.0.1:{base_port}/courses?institution_id={fx.institution_id}")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{somo_port}/api/v1/auth/token", json={"login": "bench", "password": PASSWORD}
            ) as response,
        ):
            token = (await response.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        somo_base, base_base = f"http://127.0.0.1:{somo_port}", f"http://127.0.0.1:{base_port}"

        def somo_read(http: aiohttp.ClientSession) -> Any:
            return http.get(f"{somo_base}/api/v1/courses", headers=auth)

        def base_read(http: aiohttp.ClientSession) -> Any:
            return http.get(f"{base_base}/courses", params={"institution_id": fx.institution_id})

        def somo_write(http: aiohttp.ClientSession) -> Any:
            lesson = random.choice(fx.lesson_ids)
            return http.put(
                f"{somo_base}/api/v1/lessons/{lesson}/progress", headers=auth, json={"percent": random.randint(1, 99)}
            )

        def base_write(http: aiohttp.ClientSession) -> Any:
            lesson = random.choice(fx.baseline_lessons)
            return http.put(
                f"{base_base}/lessons/{lesson}/progress",
                json={"percent": random.randint(1, 99), "learner_id": fx.learner_id},
            )

        for scenario, pair in (
            ("course list (read)", (base_read, somo_read)),
            ("progress update (write)", (base_write, somo_write)),
        ):
            for server, make in zip(("baseline", "somo"), pair, strict=True):
                done, errors, lat = await run_load(make, seconds=seconds, concurrency=concurrency)
                results.append(Result(backend, scenario, server, done, errors, seconds, lat))
    finally:
        for proc in (somo, baseline):
            proc.send_signal(signal.SIGINT)
        for proc in (somo, baseline):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    console = Console(width=140)
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as workdir:
        for backend in args.backends:
            url = asyncio.run(fresh_database(backend, args.postgres, workdir))
            try:
                upgrade(url)
                fx = asyncio.run(prepare(url))
                console.print(
                    f"[bold]{backend}[/]: measuring {args.seconds:g}s per case at {args.concurrency} "
                    "concurrent connections"
                )
                results += asyncio.run(measure(backend, url, fx, args.seconds, args.concurrency))
            finally:
                asyncio.run(drop_database(url, args.postgres))
    table = Table(
        title=f"API load, one server process ({platform.python_version()}, {os.cpu_count()} cores, "
        f"{args.concurrency} connections, {args.seconds:g}s per case)"
    )
    for column in ("backend", "scenario", "server", "req/s", "p50 ms", "p99 ms", "errors", "vs baseline"):
        table.add_column(column, justify="right")
    for r in results:
        base = next(b for b in results if (b.backend, b.scenario, b.server) == (r.backend, r.scenario, "baseline"))
        table.add_row(
            r.backend,
            r.scenario,
            r.server,
            f"{r.rps:,.0f}",
            f"{r.pct(50):.1f}",
            f"{r.pct(99):.1f}",
            str(r.errors),
            f"{r.rps / base.rps:.2f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
