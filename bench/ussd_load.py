"""USSD load: learner journeys over Africa's Talking's protocol against one server process,
compared with two bare aiohttp baselines measured in the same run (`bench/ussd_baseline.py`).

Cells: SQLite with the in-process session store, and PostgreSQL with Redis, each at 50 and
200 concurrent sessions, in two modes. In every cell three servers are measured one after the
other, on the same store kind: *baseline (a)*, a handler answering a fixed screen; *baseline
(b)*, a handler doing the engine's per-hop store traffic (lock, get, set with TTL, unlock)
before the fixed screen; and *somo*, the real `POST /ussd/africastalking`.

A virtual session is a learner's journey with a fresh ``sessionId``: dial, PIN, home ->
1 Take a quiz -> 1 course -> 1 quiz -> six answers (the last submits, ``END``), then it
redials as the next learner of the pool; a share of the journeys is dial, PIN, 2 My progress
(then the phone hangs up). Against Somo the client follows the screens it gets (a resumed quiz
or an unexpected screen is handled); against a baseline it sends the same inputs blind.
Thousands of extra learners (their own phones, enrolled in the demo course) keep the
per-learner lock and the quiz's three-attempt limit out of the figures: no learner is in two
sessions at once, and none starts a fourth attempt.

The two modes (``--modes``, both by default):

* *saturation*: the hops of a journey, and the journeys, run back to back with no pause. A
  closed loop at full speed: it measures throughput, but its latency is fixed by it (Little's
  law: mean hop latency = sessions / hops/s), so at 50 sessions even baseline (b) cannot be
  fast.
* *think*: before every hop after a journey's dial, the session pauses as a person reading
  the screen and typing would: a think time drawn from an exponential distribution with mean
  ``--think-ms`` (1 s by default; AT allows 30-60 s per screen), capped at 5 x the mean, from
  the session's own ``random.Random`` seeded from ``--seed`` (repeatable). Each session also
  starts after one such draw, so the dials do not arrive together. Hop latency excludes the
  pause. Once the window closes, journeys still running finish without pauses (uncounted).

PIN hashing is excluded on purpose: the learners' PINs are hashed with cheap argon2
parameters and the server is started through ``python -m bench.ussd_load serve``, which is
``somo serve`` with that hasher. The cost of one argon2 verify with the default parameters
is measured and printed separately.

Reported per cell: hops/s (answered hops per second), client-side hop latency p50, p99 and
p99.9, and errors by kind: HTTP (non-200 or no answer), malformed (not ``CON``/``END``),
``END Sorry`` screens, and unexpected screens (the journey could not go on). Targets (USSD
issue), at 50 concurrent sessions on PostgreSQL with Redis: at least 0.5 of baseline (b)'s
hops/s, judged on the saturation cells; and p99 at most 50 ms, judged on the think-time cell
(the closed-loop p99, and baseline (b)'s, are printed beside it).

    python -m bench.ussd_load [--modes saturation,think] [--seconds 10] [--think-seconds 15]
        [--think-ms 1000] [--warmup 2] [--concurrency 50 200] [--backends sqlite postgres]
        [--learners 1000] [--progress-share 0.2] [--seed 1] [--redis redis://127.0.0.1:6379/14]
        [--profile DIR] [--logs DIR] [--json]

The defaults keep the whole run (24 cells, two databases of learners to create) near eight
minutes on a 2-core machine.

Also printed, to say where the time goes: the cores used in each window by the server, the
load client, Postgres, Redis and anything else on the machine (a busy machine skews a cell);
on Postgres, what the server's backends were doing (``pg_stat_activity`` every 100 ms, the
statements waiting on a lock) and ``pg_stat_database`` rates; and a census of one quiz and
one My progress journey through the real app in this process, uncontended: the statements,
wall and CPU time of every hop. ``--profile DIR`` runs py-spy on the Somo server during each
measured window and writes collapsed stacks to ``DIR/ussd-<mode>-<backend>-<sessions>.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import sqlalchemy as sa
from aiohttp.test_utils import TestServer
from redis.asyncio import Redis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import SystemClock
from lms_domain.courses.service import enroll
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.i18n import Language
from lms_domain.notifications.models import NotificationLog, NotificationStatus
from lms_domain.security import DEFAULT_HASHER, Hasher
from lms_domain.tenancy.service import create_learner
from server.app import create_app
from server.keys import engine_key
from server.migrate import upgrade
from server.seed import DEMO_INSTITUTION_ID, seed_demo, sid
from server.settings import (
    CENTRAL_NODE_ID,
    DatabaseSettings,
    PaymentsSettings,
    RateLimitSettings,
    RedisSettings,
    Settings,
)

# The cheap profile of tests.factories.FAST_HASHER: a PIN check costs microseconds, not tens
# of milliseconds, so the figures are the engine's, not argon2's (measured apart).
BENCH_HASHER = Hasher(time_cost=1, memory_cost_kib=64, parallelism=1)
SERVICE_CODE = "*384*123#"
SAFARICOM = "63902"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
KEY_PREFIX = "somo:"  # the server's RedisStore prefix; the baseline uses it too
MAX_ATTEMPTS = 3  # the demo final quiz's limit (server.seed)
CENSUS_LEARNERS = 3  # kept out of the load: a warm-up journey, a quiz and a My progress
MAX_HOPS = 20  # a journey is 3 or 11 hops; more means the client is lost
TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_CELL = ("postgres", 50)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
QUESTION = re.compile(r"^Q(\d+)/(\d+): ", re.MULTILINE)
OPTION = re.compile(r"^\d+\. ", re.MULTILINE)
HOME = re.compile(r"^Somo: ", re.MULTILINE)
SERVERS = ("baseline (a)", "baseline (b)", "somo")
SERVICES = ("postgres", "redis-server")
STORES = {"sqlite": "in-process", "postgres": "Redis"}
MODES = ("saturation", "think")
THINK_CAP = 5  # a think time is at most this many times the mean
# What a hop does: dial (the PIN screen), pin, menu (home -> course list -> quiz list, or a
# resumed quiz), start (quiz chosen: start_attempt), answer (questions 1-5: the store only),
# submit (the last answer: submit_attempt), progress (My progress).
HOP_KINDS = ("dial", "pin", "menu", "start", "answer", "submit", "progress")


# Processes, databases and the machine (as bench/databases.py and bench/settlement_load.py do,
# through SQLAlchemy rather than asyncpg, whose missing type information would leak into
# this module's mypy run) --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status < 500:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _admin_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def fresh_database(backend: str, dsn: str, workdir: str) -> str:
    """A SQLite file under ``workdir``, or a Postgres database created for the run."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{workdir}/ussd-{uuid.uuid4().hex[:8]}.db"
    name = f"somo_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(_admin_url(dsn), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await admin.dispose()
    return _admin_url(dsn).rsplit("/", 1)[0] + f"/{name}"


async def drop_database(url: str, dsn: str) -> None:
    if not url.startswith("postgresql"):
        return
    admin = create_async_engine(_admin_url(dsn), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    finally:
        await admin.dispose()


def start_server(
    module: list[str], url: str, port: int, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "SOMO_DATABASE__URL": url,
        "SOMO_HTTP__PORT": str(port),
        "SOMO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
    }
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", *module], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def summarise_log(path: Path) -> dict[str, int]:
    """Warnings and errors the server logged (JSON lines), counted by level and message."""
    seen: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Error" in line or "Traceback" in line:
                seen[f"text: {line[:120]}"] += 1
            continue
        if not isinstance(record, dict):
            continue
        level = str(record.get("level", "")).upper()
        if level in ("WARNING", "ERROR", "CRITICAL"):
            message = re.sub(r"[0-9a-f-]{32,36}", "<id>", str(record.get("msg", "")))
            seen[f"{level}: {message[:120]}"] += 1
            if record.get("exc"):
                seen[f"{level} exception: {str(record['exc']).strip().splitlines()[-1][:160]}"] += 1
    return dict(seen.most_common(10))


def machine(postgres_dsn: str | None, redis_url: str | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sqlite": sqlite3.sqlite_version,
    }
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, check=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        info["commit"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    with contextlib.suppress(OSError):
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    if postgres_dsn:

        async def postgres_version() -> str:
            engine = create_async_engine(_admin_url(postgres_dsn))
            try:
                async with engine.connect() as conn:
                    return str(await conn.scalar(sa.text("SHOW server_version")))
            finally:
                await engine.dispose()

        info["postgres"] = asyncio.run(postgres_version())
    if redis_url:

        async def redis_version() -> str:
            client = Redis.from_url(redis_url, decode_responses=True)
            try:
                return str((await client.info("server"))["redis_version"])
            finally:
                await client.aclose()

        info["redis"] = asyncio.run(redis_version())
    return info


# The world: the demo data and a pool of learners with their own phones ----------------------


@dataclass(frozen=True, slots=True)
class BenchLearner:
    phone: str
    pin: str


def bench_learners(count: int) -> list[BenchLearner]:
    """Learners on +254 71x xxx xxx (Safaricom), one per phone, each with its own PIN."""
    if count > 10**7:
        raise ValueError("at most 10,000,000 learners fit the +25471 range")
    return [BenchLearner(f"+25471{n:07d}", f"{(n * 7919) % 10_000:04d}") for n in range(count)]


async def prepare(url: str, learners: list[BenchLearner], progress: Progress) -> None:
    """The demo data, then ``learners`` in the demo school, enrolled in Form 2 Mathematics,
    through the domain services (change capture on), in transactions of 250."""
    install_change_capture()
    engine = create_engine(url)
    clock = SystemClock()
    makers = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL, clock=clock))
    course_id = sid("course", "form2-maths")
    task = progress.add_task("learners", total=len(learners))
    try:
        async with makers() as session, session.begin():
            await seed_demo(
                session=session, clock=clock, simulator_url=PaymentsSettings().simulator_url, hasher=BENCH_HASHER
            )
        for start in range(0, len(learners), 250):
            async with makers() as session, session.begin():
                for n, learner in enumerate(learners[start : start + 250], start=start):
                    row = await create_learner(
                        session=session,
                        institution_id=DEMO_INSTITUTION_ID,
                        display_name=f"Learner {n}",
                        phone=learner.phone,
                        language=Language.EN,
                        pin=learner.pin,
                        grade="Form 2",
                        hasher=BENCH_HASHER,
                    )
                    await enroll(session=session, learner_id=row.id, course_id=course_id, clock=clock)
            progress.update(task, completed=min(start + 250, len(learners)))
        async with makers() as session, session.begin():
            # Enrolling queued a message per learner. They are the setup's, not the load: left
            # queued, the measured server would spend its windows sending them (and retrying).
            await session.execute(sa.delete(NotificationLog).where(NotificationLog.status == NotificationStatus.QUEUED))
    finally:
        progress.remove_task(task)
        await engine.dispose()


class LearnerPool:
    """Learners in turn, each in one session at a time. With ``limit``, a learner who has
    started that many quizzes leaves the pool (a fourth attempt would be refused)."""

    def __init__(self, learners: list[BenchLearner], rng: random.Random, *, limit: int | None) -> None:
        order = list(learners)
        rng.shuffle(order)
        self._idle: deque[BenchLearner] = deque(order)
        self._quizzes: Counter[str] = Counter()
        self._limit = limit
        self.retired = 0

    def take(self) -> BenchLearner:
        if not self._idle:
            raise RuntimeError("every learner has used up the quiz's attempts: raise --learners")
        return self._idle.popleft()

    def give_back(self, learner: BenchLearner, *, took_quiz: bool) -> None:
        if took_quiz:
            self._quizzes[learner.phone] += 1
        if self._limit is not None and self._quizzes[learner.phone] >= self._limit:
            self.retired += 1
            return
        self._idle.append(learner)


# Measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 10) - 1]


@dataclass
class Cell:
    backend: str
    concurrency: int
    server: str
    seconds: float
    mode: str = "saturation"
    think_ms: float = 0.0  # the configured mean think time (0: no pause, saturation)
    think_s: float = 0.0  # pauses drawn for hops in the window, summed
    thinks: int = 0
    hops: int = 0  # answered hops (valid screens, the END Sorry ones excluded)
    http_errors: int = 0
    malformed: int = 0
    sorry: int = 0
    unexpected: int = 0
    quizzes: int = 0  # journeys that reached the score
    progress: int = 0  # journeys that reached My progress
    server_cpu: float = float("nan")  # of one core, over the measured window
    client_cpu: float = float("nan")
    machine_idle: float = float("nan")  # of all cores (Postgres and Redis use the rest)
    services_cpu: dict[str, float] = field(default_factory=dict)  # cores used by Postgres, Redis
    postgres: dict[str, Any] = field(default_factory=dict)  # Somo cells on Postgres: pg_activity()
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    by_kind_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)  # HOP_KINDS
    sorry_screens: dict[str, int] = field(default_factory=dict)
    unexpected_screens: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.hops / self.seconds

    @property
    def think_mean_ms(self) -> float:
        """The mean pause actually drawn (with the cap, a little under ``think_ms``)."""
        return self.think_s * 1000 / self.thinks if self.thinks else 0.0

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def kinds(self) -> dict[str, dict[str, float]]:
        """Per kind of hop: how many were counted, and their p50 and p99 in ms."""
        return {
            kind: {
                "hops": len(values),
                "p50_ms": round(percentile(values, 50), 1),
                "p99_ms": round(percentile(values, 99), 1),
            }
            for kind in HOP_KINDS
            if (values := self.by_kind_ms.get(kind))
        }

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"], data["by_kind_ms"]
        return data | {
            "by_kind": self.kinds(),
            "hops_per_s": round(self.rate, 1),
            "p50_ms": round(self.pct(50), 2),
            "p99_ms": round(self.pct(99), 2),
            "p99_9_ms": round(self.pct(99.9), 2),
            "think_mean_ms": round(self.think_mean_ms, 1),
        }


@dataclass
class Window:
    """Hops that start in [start, end) are counted; journeys go on until ``end`` and the ones
    still running then finish uncounted (so no quiz attempt is left open)."""

    start: float
    end: float

    def counts(self, at: float) -> bool:
        return self.start <= at < self.end


class Thinker:
    """One virtual session's pauses: exponential with mean ``mean_ms`` capped at THINK_CAP x
    the mean, from the session's own generator (so a run is repeatable). No pause when the
    mean is 0 (saturation) or once the window has closed (the journey finishes uncounted)."""

    def __init__(self, mean_ms: float, rng: random.Random, window: Window, cell: Cell) -> None:
        self.mean_s, self.rng, self.window, self.cell = mean_ms / 1000, rng, window, cell

    async def __call__(self) -> None:
        if self.mean_s <= 0 or time.monotonic() >= self.window.end:
            return
        pause = min(self.rng.expovariate(1 / self.mean_s), THINK_CAP * self.mean_s)
        if self.window.counts(time.monotonic() + pause):  # the hop it precedes is counted
            self.cell.think_s += pause
            self.cell.thinks += 1
        await asyncio.sleep(pause)


NO_THINK = Thinker(0, random.Random(0), Window(0, 0), Cell("none", 0, "none", 0))


class Client:
    """Posts hops as AT does (a form, ``text`` cumulative) and classifies the answers."""

    def __init__(self, http: aiohttp.ClientSession, url: str, window: Window, cell: Cell) -> None:
        self.http, self.url, self.window, self.cell = http, url, window, cell

    async def hop(self, session_id: str, phone: str, text: str, kind: str = "dial") -> str | None:
        """The screen, or None when the journey cannot go on (an error, counted); the latency
        is noted under ``kind`` too (HOP_KINDS)."""
        form = urlencode(
            {
                "sessionId": session_id,
                "serviceCode": SERVICE_CODE,
                "phoneNumber": phone,
                "networkCode": SAFARICOM,
                "text": text,
            }
        )
        started = time.monotonic()
        t0 = time.perf_counter()
        try:
            async with self.http.post(self.url, data=form, headers=FORM) as response:
                body = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            body, status = "", 0
        elapsed_ms = (time.perf_counter() - t0) * 1000
        counted = self.window.counts(started)
        cell = self.cell
        if counted:
            cell.latencies_ms.append(elapsed_ms)
            cell.by_kind_ms.setdefault(kind, []).append(elapsed_ms)
        if status != 200:
            cell.http_errors += counted
            return None
        if not body.startswith(("CON ", "END ")):
            cell.malformed += counted
            return None
        if body.startswith("END Sorry"):
            if counted:
                cell.sorry += 1
                cell.sorry_screens[body[:60]] = cell.sorry_screens.get(body[:60], 0) + 1
            return None
        cell.hops += counted
        return body

    def lost(self, screen: str) -> None:
        if self.window.counts(time.monotonic()):
            self.cell.unexpected += 1
            key = re.sub(r"\d", "9", screen[:60])
            self.cell.unexpected_screens[key] = self.cell.unexpected_screens.get(key, 0) + 1


def new_session_id() -> str:
    return f"ATUid_{uuid.uuid4().hex}"


async def somo_journey(
    client: Client, learner: BenchLearner, quiz: bool, rng: random.Random, think: Thinker = NO_THINK
) -> None:
    """Follow Somo's screens through one dial: PIN, then the quiz to its score or My progress
    (``think`` pauses before every hop after the dial)."""
    session_id, inputs = new_session_id(), []
    screen = await client.hop(session_id, learner.phone, "")
    for _ in range(MAX_HOPS):
        if screen is None:
            return
        if screen.startswith("END "):
            if quiz and "Score: " in screen:
                client.cell.quizzes += client.window.counts(time.monotonic())
            else:
                client.lost(screen)
            return
        body = screen[4:]  # a notice line may come first: match lines, not the start
        kind = "menu"
        if "enter your 4-digit PIN" in body:
            value, kind = learner.pin, "pin"
        elif "you left a quiz at question" in body:
            value = "1"  # a session dropped earlier: continue it
        elif question := QUESTION.search(body):
            value = str(rng.randint(1, max(len(OPTION.findall(body)), 1)))
            kind = "submit" if question.group(1) == question.group(2) else "answer"
        elif HOME.search(body):
            value, kind = ("1", "menu") if quiz else ("2", "progress")
        elif "Choose a course:" in body:
            value = "1"
        elif ": choose a quiz:" in body:
            value, kind = "1", "start"
        elif "My progress:" in body and not quiz:
            client.cell.progress += client.window.counts(time.monotonic())
            return  # read, then hang up: AT sends no further hop
        else:
            client.lost(screen)
            return
        inputs.append(value)
        await think()
        screen = await client.hop(session_id, learner.phone, "*".join(inputs), kind)
    client.lost(screen or "")


async def blind_journey(
    client: Client, learner: BenchLearner, quiz: bool, rng: random.Random, think: Thinker = NO_THINK
) -> None:
    """The same inputs as a Somo journey, sent whatever the (fixed) screen says, with the same
    pauses."""
    session_id = new_session_id()
    steps = [learner.pin, "1", "1", "1", *(str(rng.randint(1, 4)) for _ in range(6))] if quiz else [learner.pin, "2"]
    kinds = ["pin", "menu", "menu", "start", *["answer"] * 5, "submit"] if quiz else ["pin", "progress"]
    if await client.hop(session_id, learner.phone, "") is None:
        return
    for n, kind in enumerate(kinds, start=1):
        await think()
        if await client.hop(session_id, learner.phone, "*".join(steps[:n]), kind) is None:
            return
    if quiz:
        client.cell.quizzes += client.window.counts(time.monotonic())
    else:
        client.cell.progress += client.window.counts(time.monotonic())


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(idle, total) clock ticks of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return values[3] + values[4], sum(values[:8])


def services_cpu_s() -> dict[str, float]:
    """CPU seconds used so far by the processes of each service that shares the machine."""
    used: dict[str, float] = dict.fromkeys(SERVICES, 0.0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            head, tail = stat.read_text().rsplit(")", 1)
            name = head.split("(", 1)[1]
            if name in used:
                fields = tail.split()
                used[name] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


async def sample_cpu(cell: Cell, window: Window, server_pid: int) -> None:
    """CPU use of the server, of this client, of Postgres and Redis (all their processes; ones
    that exit during the window are missed) and the idle share of the machine over the window."""
    await asyncio.sleep(max(window.start - time.monotonic(), 0))
    t0, server0, client0, (idle0, total0) = (
        time.monotonic(),
        process_cpu_s(server_pid),
        time.process_time(),
        machine_ticks(),
    )
    services0 = services_cpu_s()
    await asyncio.sleep(max(window.end - time.monotonic(), 0))
    elapsed, (idle1, total1) = time.monotonic() - t0, machine_ticks()
    cell.server_cpu = (process_cpu_s(server_pid) - server0) / elapsed
    cell.client_cpu = (time.process_time() - client0) / elapsed
    cell.machine_idle = (idle1 - idle0) / max(total1 - total0, 1)
    cell.services_cpu = {
        name: round((used - services0.get(name, 0.0)) / elapsed, 2) for name, used in services_cpu_s().items()
    }
    busy = (1 - cell.machine_idle) * (os.cpu_count() or 1)
    # Anything else running on the machine (another benchmark, a test run): it skews the cell.
    cell.services_cpu["others"] = round(busy - cell.server_cpu - cell.client_cpu - sum(cell.services_cpu.values()), 2)


# Where a hop's time goes: statements per hop, and what Postgres waits on ------------------------


class CensusClient(Client):
    """A client that notes, per hop, the SQL statements the app ran, the wall time and the CPU
    time of this process (the app and this client: the client's part is about 0.3 ms)."""

    def __init__(self, http: aiohttp.ClientSession, url: str, cell: Cell, statements: list[str]) -> None:
        super().__init__(http, url, Window(0, float("inf")), cell)
        self.statements = statements
        self.hops: list[dict[str, Any]] = []

    async def hop(self, session_id: str, phone: str, text: str, kind: str = "dial") -> str | None:
        before = len(self.statements)
        t0, cpu0 = time.perf_counter(), time.process_time()
        screen = await super().hop(session_id, phone, text, kind)
        ran = self.statements[before:]
        self.hops.append(
            {
                "input": text.rsplit("*", 1)[-1] if text else "(dial)",
                "screen": (screen or "(error)").split("\n", 1)[0][:40],
                "ms": round((time.perf_counter() - t0) * 1000, 1),
                "cpu_ms": round((time.process_time() - cpu0) * 1000, 1),
                "statements": len(ran),
                "kinds": dict(Counter(ran).most_common()),
            }
        )
        return screen


def statement_label(sql: str) -> str:
    words = sql.strip().split(None, 1)
    verb = words[0].upper() if words else "?"
    table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", sql, re.IGNORECASE)
    label = f"{verb} {table.group(1)}" if table else verb
    if "pg_advisory_xact_lock" in sql:
        label = "SELECT pg_advisory_xact_lock"
    return label


async def census(url: str, redis_url: str | None, learners: list[BenchLearner]) -> dict[str, Any]:
    """One quiz journey and one My progress journey through the real app in this process,
    uncontended and warm (a first quiz journey by another learner warms the caches): per hop,
    the statements run (transaction control included) and the wall time."""
    warm, quiz_taker, reader = learners
    settings = Settings(
        database=DatabaseSettings(url=url),
        redis=RedisSettings(url=redis_url),
        rate_limit=RateLimitSettings(enabled=False),
        payments=PaymentsSettings(poll_interval_s=0),
        log_level="WARNING",
    )
    app = create_app(settings, hasher=BENCH_HASHER)
    statements: list[str] = []
    rng = random.Random(0)
    server = TestServer(app)
    async with server, aiohttp.ClientSession() as http:
        engine = app[engine_key].sync_engine
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(statement_label(a[2])))
        event.listen(engine, "begin", lambda _conn: statements.append("BEGIN"))
        event.listen(engine, "commit", lambda _conn: statements.append("COMMIT"))
        event.listen(engine, "rollback", lambda _conn: statements.append("ROLLBACK"))
        cell = Cell("census", 1, "somo", 1)
        url_hop = str(server.make_url("/ussd/africastalking"))
        await somo_journey(CensusClient(http, url_hop, cell, statements), warm, True, rng)
        quiz = CensusClient(http, url_hop, cell, statements)
        await somo_journey(quiz, quiz_taker, True, rng)
        progress = CensusClient(http, url_hop, cell, statements)
        await somo_journey(progress, reader, False, rng)
    return {"quiz": quiz.hops, "progress": progress.hops}


PG_COUNTERS = ("sessions", "xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "deadlocks")


async def pg_activity(dsn: str, database: str, window: Window, into: dict[str, Any]) -> None:
    """Over ``window``: what the benchmark database's client backends are doing (sampled every
    100 ms), which statements wait on a lock, and the growth of pg_stat_database counters."""
    engine = create_async_engine(_admin_url(dsn), pool_size=1, max_overflow=0)
    states: Counter[str] = Counter()
    waiting: Counter[str] = Counter()
    counters = sa.text(
        f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database WHERE datname = :db"  # noqa: S608 (constants)
    )
    activity = sa.text(
        "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity "
        "WHERE datname = :db AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    try:
        async with engine.connect() as conn:
            await asyncio.sleep(max(window.start - time.monotonic(), 0))
            before = (await conn.execute(counters, {"db": database})).one()
            samples = 0
            while time.monotonic() < window.end:
                for state, wait_type, wait, query in await conn.execute(activity, {"db": database}):
                    if state == "active":
                        states[f"active, {wait_type or 'on CPU'}:{wait or '-'}"] += 1
                        if wait_type == "Lock":
                            waiting[statement_label(query or "")] += 1
                    else:
                        states[str(state)] += 1
                samples += 1
                await conn.commit()  # pg_stat views are snapshots per transaction
                await asyncio.sleep(0.1)
            after = (await conn.execute(counters, {"db": database})).one()
    finally:
        await engine.dispose()
    seconds = window.end - window.start
    into["pg_backends_mean"] = {k: round(v / max(samples, 1), 1) for k, v in states.most_common()}
    into["pg_lock_waiters_mean"] = {k: round(v / max(samples, 1), 1) for k, v in waiting.most_common(6)}
    into["pg_per_s"] = {name: round((after[i] - before[i]) / seconds, 1) for i, name in enumerate(PG_COUNTERS)}


async def run_cell(
    url: str,
    cell: Cell,
    pool: LearnerPool,
    *,
    server_pid: int,
    warmup: float,
    progress_share: float,
    seed: int,
    progress: Progress,
    pg: tuple[str, str] | None = None,
) -> None:
    """Closed-loop journeys by ``cell.concurrency`` sessions until the window ends, pausing
    ``cell.think_ms`` on average before each hop after a dial (``pg``: the admin DSN and
    database name, to sample Postgres during the window)."""
    rng = random.Random(seed)
    journey = somo_journey if cell.server == "somo" else blind_journey
    now = time.monotonic()
    window = Window(now + warmup, now + warmup + cell.seconds)
    connector = aiohttp.TCPConnector(limit=cell.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    task = progress.add_task(
        f"{cell.mode} {cell.backend} {cell.concurrency:>3} {cell.server}", total=warmup + cell.seconds
    )
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        client = Client(http, url, window, cell)

        async def session_slot(worker_rng: random.Random, slot: int) -> None:
            # Its own generator for the pauses, so the answers drawn do not depend on the mode.
            think = Thinker(cell.think_ms, random.Random(f"think:{seed}:{slot}"), window, cell)
            await think()  # staggered starts: the dials of a think cell do not arrive together
            while time.monotonic() < window.end:
                learner = pool.take()
                quiz = worker_rng.random() >= progress_share
                try:
                    await journey(client, learner, quiz, worker_rng, think)
                finally:
                    pool.give_back(learner, took_quiz=quiz)

        async def ticker() -> None:
            while True:
                progress.update(task, completed=min(time.monotonic() - now, warmup + cell.seconds))
                await asyncio.sleep(0.5)

        tick = asyncio.create_task(ticker())
        samplers = [asyncio.create_task(sample_cpu(cell, window, server_pid))]
        if pg is not None:
            samplers.append(asyncio.create_task(pg_activity(*pg, window, cell.postgres)))
        try:
            await asyncio.gather(*(session_slot(random.Random(rng.random()), slot) for slot in range(cell.concurrency)))
            await asyncio.gather(*samplers)
        finally:
            tick.cancel()
            for sampler in samplers:
                sampler.cancel()
            progress.remove_task(task)


async def redis_clean(url: str) -> int:
    """Delete the ``somo:`` keys of the benchmark's Redis database (nothing else)."""
    client = Redis.from_url(url, decode_responses=True)
    deleted = 0
    try:
        batch: list[str] = []
        async for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(await client.delete(*batch))
                batch = []
        if batch:
            deleted += int(await client.delete(*batch))
    finally:
        await client.aclose()
    return deleted


async def redis_state_bytes(url: str, sample: int = 200) -> float | None:
    """Mean size of the engine's session states left in Redis (live for 180 s after a hop)."""
    client = Redis.from_url(url, decode_responses=True)
    sizes: list[int] = []
    try:
        async for key in client.scan_iter(match=f"{KEY_PREFIX}ussd:s:*", count=500):
            sizes.append(int(await client.strlen(key)))
            if len(sizes) >= sample:
                break
    finally:
        await client.aclose()
    return statistics.fmean(sizes) if sizes else None


async def profile_window(pid: int, out: Path, delay: float, seconds: float) -> None:
    """py-spy on ``pid`` for the measured window only (collapsed stacks in ``out``)."""
    await asyncio.sleep(delay)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [py_spy, "record", "--pid", str(pid), "--rate", "100", "--duration", str(max(round(seconds), 1))]
    proc = await asyncio.create_subprocess_exec(
        *command,
        "--format",
        "raw",
        "--nonblocking",
        "-o",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()


def argon2_costs(rounds: int = 15) -> dict[str, float]:
    """Median milliseconds of one right-PIN verify, default and benchmark parameters."""
    costs = {}
    for name, hasher in (("default", DEFAULT_HASHER), ("bench", BENCH_HASHER)):
        stored = hasher.hash("1234")
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            assert hasher.verify(stored, "1234")
            times.append((time.perf_counter() - t0) * 1000)
        costs[name] = statistics.median(times)
    return costs


async def measure_backend(
    backend: str, url: str, learners: list[BenchLearner], args: argparse.Namespace, workdir: Path, progress: Progress
) -> tuple[list[Cell], dict[str, Any]]:
    store = args.redis if backend == "postgres" else None
    extra: dict[str, Any] = {}
    env = {"SOMO_PAYMENTS__POLL_INTERVAL_S": "0", "SOMO_REDIS__URL": store or ""}
    somo_port, base_port = free_port(), free_port()
    somo_log, base_log = workdir / f"ussd-somo-{backend}.log", workdir / f"ussd-baseline-{backend}.log"
    if store:
        await redis_clean(store)
    cells: list[Cell] = []
    load, spare = learners[:-CENSUS_LEARNERS], learners[-CENSUS_LEARNERS:]
    somo_pool = LearnerPool(load, random.Random(args.seed), limit=MAX_ATTEMPTS)
    blind_pool = LearnerPool(load, random.Random(args.seed), limit=None)
    extra["census"] = await census(url, store, spare)  # before the servers start: uncontended
    somo = start_server(["bench.ussd_load", "serve"], url, somo_port, somo_log, env)
    baseline = start_server(["bench.ussd_baseline", store or "memory", str(base_port)], url, base_port, base_log)
    try:
        await wait_ready(f"http://127.0.0.1:{somo_port}/health")
        await wait_ready(f"http://127.0.0.1:{base_port}/health")
        for mode, concurrency, server in itertools.product(args.modes, args.concurrency, SERVERS):
            think = mode == "think"
            seconds = args.think_seconds if think else args.seconds
            cell = Cell(backend, concurrency, server, seconds, mode=mode, think_ms=args.think_ms if think else 0.0)
            path = {"baseline (a)": "/fixed", "baseline (b)": "/store", "somo": "/ussd/africastalking"}[server]
            port = somo_port if server == "somo" else base_port
            profiler = None
            if args.profile and server == "somo":
                out = Path(args.profile) / f"ussd-{mode}-{backend}-{concurrency}.txt"
                profiler = asyncio.create_task(profile_window(somo.pid, out, args.warmup, seconds))
            await run_cell(
                f"http://127.0.0.1:{port}{path}",
                cell,
                somo_pool if server == "somo" else blind_pool,
                server_pid=somo.pid if server == "somo" else baseline.pid,
                warmup=args.warmup,
                progress_share=args.progress_share,
                seed=args.seed + concurrency,
                progress=progress,
                pg=(args.postgres, url.rsplit("/", 1)[1]) if backend == "postgres" and server == "somo" else None,
            )
            if profiler is not None:
                await profiler
            cells.append(cell)
        if store:
            extra["state_bytes"] = await redis_state_bytes(store)
        extra["retired_learners"] = somo_pool.retired
    finally:
        stop(somo)
        stop(baseline)
        if store:
            await redis_clean(store)
    extra["server_log"] = summarise_log(somo_log)
    if args.logs:
        shutil.copy(somo_log, Path(args.logs) / somo_log.name)
    return cells, extra


# Reporting ------------------------------------------------------------------------------------


def find(cells: list[Cell], mode: str, backend: str, concurrency: int, server: str) -> Cell | None:
    return next(
        (c for c in cells if (c.mode, c.backend, c.concurrency, c.server) == (mode, backend, concurrency, server)),
        None,
    )


def baseline_b(cells: list[Cell], cell: Cell) -> Cell | None:
    return find(cells, cell.mode, cell.backend, cell.concurrency, SERVERS[1])


def verdicts(cells: list[Cell]) -> list[tuple[str, bool]]:
    """The two targets, at 50 concurrent sessions on PostgreSQL with Redis: the throughput ratio
    from the saturation cells, p99 from the think-time cell."""
    found: list[tuple[str, bool]] = []
    somo = find(cells, "saturation", *TARGET_CELL, "somo")
    base = baseline_b(cells, somo) if somo else None
    if somo and base:
        ratio = somo.rate / base.rate
        found.append(
            (
                f"hops/s >= {TARGET_RATIO} x baseline (b), saturation cells: {ratio:.2f} "
                f"({somo.rate:,.0f} against {base.rate:,.0f} hops/s)",
                ratio >= TARGET_RATIO,
            )
        )
    think = find(cells, "think", *TARGET_CELL, "somo")
    if think:
        found.append(
            (
                f"p99 <= {TARGET_P99_MS:g} ms, sessions with {think.think_ms / 1000:g} s mean think time: "
                f"{think.pct(99):.1f} ms",
                think.pct(99) <= TARGET_P99_MS,
            )
        )
    return found


def closed_loop_notes(cells: list[Cell]) -> list[str]:
    """Why the saturation cells' p99 is not the latency criterion: in a closed loop with no
    pause, mean latency = sessions / hops/s (Little's law), whatever the server does."""
    notes = []
    for server in ("somo", SERVERS[1]):
        cell = find(cells, "saturation", *TARGET_CELL, server)
        if cell and cell.rate:
            notes.append(
                f"closed loop, no think time (not the latency criterion): {server} p99 {cell.pct(99):.1f} ms, "
                f"p50 {cell.pct(50):.1f} ms; {cell.concurrency} sessions / {cell.rate:,.0f} hops/s "
                f"= {cell.concurrency / cell.rate * 1000:.1f} ms, the mean latency by Little's law"
            )
    return notes


def lock_waits(cell: Cell) -> str:
    """What the server's Postgres backends were doing, mean per 100 ms sample."""
    backends = cell.postgres.get("pg_backends_mean", {})
    waiters = cell.postgres.get("pg_lock_waiters_mean", {})
    active = sum(v for k, v in backends.items() if k.startswith("active"))
    return (
        f"{sum(waiters.values()):.1f} of {sum(backends.values()):.1f} backends waiting on a lock "
        f"({active:.1f} active), at {waiters or 'nothing'}"
    )


def cell_table(title: str, cells: list[Cell], everything: list[Cell], *, think: bool) -> Table:
    table = Table(title=title)
    columns = ["database", "store", "sessions", "server", "hops/s", "p50 ms", "p99 ms", "p99.9 ms"]
    columns += ["errors http/malformed/Sorry/unexpected", "journeys", "cores srv/cli/db+kv/others"]
    columns += ["think ms (drawn)"] if think else ["vs (b)"]
    for column in columns:
        table.add_column(column, justify="right")
    for c in cells:
        base = baseline_b(everything, c)
        services = sum(v for k, v in c.services_cpu.items() if k in SERVICES)
        table.add_row(
            c.backend,
            STORES[c.backend],
            str(c.concurrency),
            c.server,
            f"{c.rate:,.0f}",
            f"{c.pct(50):.1f}",
            f"{c.pct(99):.1f}",
            f"{c.pct(99.9):.1f}",
            f"{c.http_errors}/{c.malformed}/{c.sorry}/{c.unexpected}",
            f"{c.quizzes:,}q {c.progress:,}p",
            f"{c.server_cpu:.2f}/{c.client_cpu:.2f}/{services:.2f}/{c.services_cpu.get('others', float('nan')):.2f}",
            f"{c.think_mean_ms:,.0f}" if think else (f"{c.rate / base.rate:.2f}" if base and base.rate else "-"),
        )
    return table


def render(cells: list[Cell], info: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    machine_line = (
        f"{info.get('cpu', '?')}, {info['cpus']} cores, Python {info['python']}, SQLite {info['sqlite']}, "
        f"commit {info.get('commit', '?')}"
        + (f", PostgreSQL {info['postgres']}" if "postgres" in info else "")
        + (f", Redis {info['redis']}" if "redis" in info else "")
    )
    workload = f"{args.learners:,} learners, {args.progress_share:.0%} progress journeys"
    titles = {
        "saturation": f"USSD hops, saturation (closed loop, no think time), one server process, "
        f"{args.seconds:g}s per cell after {args.warmup:g}s warm-up, {workload}",
        "think": f"USSD hops, sessions with think time (exponential, mean {args.think_ms:g} ms, "
        f"capped at {THINK_CAP} x), one server process, {args.think_seconds:g}s per cell after "
        f"{args.warmup:g}s warm-up, {workload}",
    }
    for mode in args.modes:
        chosen = [c for c in cells if c.mode == mode]
        console.print(cell_table(f"{titles[mode]}\n{machine_line}", chosen, cells, think=mode == "think"))
    where = f"at {TARGET_CELL[1]} sessions on postgres + Redis"
    for text, met in verdicts(cells):
        console.print(f"target {where}: {text}: " + ("met" if met else "NOT met"))
    for note in closed_loop_notes(cells):
        console.print(f"{where}, {note}")
    costs = info["argon2_ms"]
    console.print(
        f"PIN hashing excluded: one argon2id verify costs {costs['default']:.1f} ms with the default parameters "
        f"(t=2, 19 MiB), {costs['bench']:.2f} ms with the benchmark's (t=1, 64 KiB); one per journey"
    )
    for c in cells:
        if c.server == "somo" or (c.mode, c.backend, c.concurrency) == ("think", *TARGET_CELL):
            kinds = ", ".join(f"{k} {v['p50_ms']:g}/{v['p99_ms']:g} (x{v['hops']:g})" for k, v in c.kinds().items())
            console.print(f"{c.mode} {c.backend} {c.concurrency} {c.server}, p50/p99 ms by hop: {kinds}")
    for c in cells:
        if c.postgres:
            console.print(f"{c.mode} {c.backend} {c.concurrency} {c.server}: {lock_waits(c)}")
            console.print(f"    {c.postgres}")
        if c.sorry_screens or c.unexpected_screens:
            console.print(
                f"{c.mode} {c.backend} {c.concurrency} {c.server}: sorry {c.sorry_screens}, "
                f"unexpected {c.unexpected_screens}"
            )


def render_census(backend: str, journeys: dict[str, list[dict[str, Any]]], console: Console) -> None:
    table = Table(
        title=f"{backend}: one journey of each kind, in process, uncontended (statements include BEGIN/COMMIT)"
    )
    for column in ("journey", "input", "screen", "ms", "cpu ms", "statements", "what"):
        table.add_column(column, justify="left" if column in ("screen", "what") else "right")
    for kind, hops in journeys.items():
        for hop in hops:
            what = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in hop["kinds"].items())
            table.add_row(
                kind,
                hop["input"],
                hop["screen"],
                f"{hop['ms']:.1f}",
                f"{hop['cpu_ms']:.1f}",
                str(hop["statements"]),
                what,
            )
        table.add_row(
            kind,
            "total",
            "",
            f"{sum(h['ms'] for h in hops):.1f}",
            f"{sum(h['cpu_ms'] for h in hops):.1f}",
            str(sum(h["statements"] for h in hops)),
            "",
            end_section=True,
        )
    console.print(table)


def modes_arg(value: str) -> list[str]:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are {', '.join(MODES)}, comma-separated; got {value!r}")
    return list(dict.fromkeys(modes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--modes",
        type=modes_arg,
        default=list(MODES),
        help="comma-separated: saturation (no think time), think (--think-ms); default both",
    )
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per saturation cell")
    parser.add_argument("--think-seconds", type=float, default=15, help="measured seconds per think-time cell")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000,
        help="mean think time of the think cells (exponential, capped at 5 x); saturation cells use 0",
    )
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each cell")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--backends", nargs="+", choices=("sqlite", "postgres"), default=["sqlite", "postgres"])
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--progress-share", type=float, default=0.2, help="share of My progress journeys")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis", default=os.environ.get("SOMO_BENCH_REDIS_URL", DEFAULT_REDIS))
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy the Somo server during each measured window")
    parser.add_argument("--logs", metavar="DIR", help="keep the Somo server logs in DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = parser.parse_args()
    if "think" in args.modes and args.think_ms <= 0:
        parser.error("--think-ms must be above 0 for the think mode (the saturation mode is think time 0)")
    for folder in (args.profile, args.logs):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    console = Console(width=200, stderr=args.json)
    with_postgres = "postgres" in args.backends
    info = machine(args.postgres if with_postgres else None, args.redis if with_postgres else None)
    info["argon2_ms"] = argon2_costs()
    learners = bench_learners(args.learners + CENSUS_LEARNERS)
    cells: list[Cell] = []
    extras: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Progress(
            TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(), console=console, transient=True
        ) as progress,
    ):
        for backend in args.backends:
            url = asyncio.run(fresh_database(backend, args.postgres, tmp))
            try:
                t0 = time.perf_counter()
                upgrade(url)
                asyncio.run(prepare(url, learners, progress))
                console.print(
                    f"[bold]{backend}[/]: {len(learners):,} learners ready in {time.perf_counter() - t0:.1f}s"
                )
                backend_cells, extras[backend] = asyncio.run(
                    measure_backend(backend, url, learners, args, Path(tmp), progress)
                )
                cells += backend_cells
            finally:
                asyncio.run(drop_database(url, args.postgres))
    render(cells, info, args, console)
    for backend, extra in extras.items():
        render_census(backend, extra["census"], console)
        console.print(f"{backend}: { {k: v for k, v in extra.items() if k != 'census'} }")
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "ussd_load",
                    "machine": info,
                    "config": {k: v for k, v in vars(args).items() if k not in ("postgres",)},
                    "targets": {
                        "ratio_vs_baseline_b": TARGET_RATIO,
                        "ratio_mode": "saturation",
                        "p99_ms": TARGET_P99_MS,
                        "p99_mode": "think",
                        "cell": TARGET_CELL,
                    },
                    "results": [c.summary() for c in cells],
                    "verdicts": [{"target": text, "met": met} for text, met in verdicts(cells)],
                    "closed_loop_notes": closed_loop_notes(cells),
                    "extras": extras,
                },
                indent=2,
                default=str,
            )
        )


def serve() -> None:
    """``python -m bench.ussd_load serve``: ``somo serve`` built with the benchmark's PIN hasher."""
    from aiohttp import web

    from server.app import create_app
    from server.heap import freeze_heap_after_startup
    from server.logs import configure_logging
    from server.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level, json_output=settings.log_json)
    app = create_app(settings, hasher=BENCH_HASHER)
    freeze_heap_after_startup(app)
    web.run_app(app, host="127.0.0.1", port=settings.http.port, access_log=None, print=None)


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        serve()
    else:
        main()
