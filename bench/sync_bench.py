"""Offline sync over real HTTP on loopback: a school's first copy, small syncs, ten schools
pushing at once, and what a learner at the school feels while a sync runs.

    python -m bench.sync_bench [--rows 250000] [--small-rows 50000] [--edges 10]
                               [--push-rows 5000] [--no-latency] [--json out.json]

One fresh PostgreSQL database (``somo_bench_sync_<pid>``, dropped at the end), migrated to
head and seeded with bulk Core inserts (not timed), exactly as change capture would have left
it: every synced row carries ``hlc``, ``origin_node_id`` (the central node), timestamps and
``change_seq``, and has its ``sync_outbox`` entry (one per row, ``op='upsert'``) in its feed,
whose ``sync_counters`` row holds the last number. The data:

* the platform catalogue (feed ``catalog``): 4 published free courses, each with 2 sections
  of 5 lessons, 2 quizzes of 10 questions with 4 choices: 460 rows;
* school A, ``--rows`` rows in its feed (default 250,000): the institution and, per learner,
  50 rows: the learner (60% with a phone, which travels as a companion row and is not counted),
  2 enrollments, 14 lesson-progress rows, 3 quiz attempts and their 30 answers (5,000 learners);
* school B, the same mix with ``--small-rows`` rows (default 50,000), to show that the edge's
  memory does not grow with the size of the feed;
* ``--edges`` + 1 small schools (default 11) with ``--push-rows / 10`` learners each.

The central server is the real app (``server.app.create_app``; scheduler off, rate limits on,
in-process Redis stand-in) served by aiohttp on 127.0.0.1 in this process. Every edge is a
real node directory enrolled with a one-time code (``edge_node.node.init_node``) and synced
with the real client (``sync.runner.sync_once``), each in a fresh subprocess, so its peak RSS
(``VmHWM``) is its own. Measured, in this order, in one run:

1. *initial pull*: a new edge for school A pulls its whole feed and the catalogue; rows/s,
   seconds, compressed bytes per row on the wire (``bytes_down / rows``), the edge's peak RSS,
   and the same for school B. The split: time the edge spent waiting for each pull answer
   (server + loopback + gunzip + JSON), in ``apply_batch`` (decoding rows and the merge
   statements) and the rest (commits, bookkeeping); on the server, time in ``read_batch``, in
   encoding the answer and in gzip, and CPU of this process and of PostgreSQL. Afterwards the
   whole feed is read again in process, with no HTTP, to split ``read_batch`` further.
2. *baseline*: the same rows, read from the edge's database, inserted with plain ``sqlite3``
   ``executemany`` (``INSERT``, 2,000 rows per transaction, the edge's pragmas) into a fresh
   database migrated to the same schema, in a fresh subprocess; the rate counts the same rows
   as the pull (phones are inserted too but, as in the pull, not counted).
3. *incremental*: the edge of step 1 syncs once (to hold a token, as a running node does),
   then 100 learners are renamed on the central server through the ORM (10 transactions of 10),
   then one ``sync_once`` is timed; then one with nothing to do (requests and bytes).
4. *push*: ``--edges`` edges, one per small school, each pull their school, then write
   ``--push-rows`` changes through the ORM with change capture (per learner an enrollment and
   9 lesson-progress rows, 100 rows per transaction); then all start ``sync_once`` at the same
   moment. Per edge: pushed rows / seconds until its push phase ended (``sync_once`` then
   pulls the same rows back from the feed: that echo is reported, not timed); aggregate: all
   pushed rows / (last push end - first push start). Every row must be on the central server
   after, none rejected. First, for reference, one more edge does the same alone.
5. *learner latency* (skip with ``--no-latency``): a second new edge for school A pulls the
   whole feed while, in the same process (as in ``somo edge run``), a learner's read (the
   course outline with their progress, ``lesson_statuses``) and write (``record_progress``
   through the domain flow, a write transaction with change capture) run in a loop with 50 ms
   pauses; then the same loop with no sync running. p50/p95 of read + write.

Targets (the issue's): >= 9,400 rows/s applied, <= 150 MiB edge peak RSS and flat in the feed
size, <= 200 bytes per row on the wire, an incremental sync of 100 changes in <= 0.5 s,
>= 2,000 rows/s pushed per edge with ten pushing, and the learner p95 at most doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import lms_domain.models  # noqa: F401 - every table mapped, as in the server, so foreign keys resolve
import sync.apply
import sync.outbox
import sync.runner
from edge_node.node import NodeFiles, client_for, init_node, open_node
from lms_domain.assessments.models import AttemptStatus, Channel
from lms_domain.changefeed.capture import CATALOG_SCOPE
from lms_domain.changefeed.hlc import pack
from lms_domain.changefeed.models import ChangeOp, SyncCounter
from lms_domain.courses.models import Course, CourseAccess, Enrollment, EnrollmentStatus, Lesson, LessonProgress
from lms_domain.db import Base, create_engine
from lms_domain.i18n import Language
from lms_domain.ids import luhn_check_digit, natural_id, new_id
from lms_domain.phones import Network
from lms_domain.tenancy.models import Institution, Learner, UnknownPhonePolicy
from server.migrate import upgrade
from server.settings import CENTRAL_NODE_ID
from sync.client import SyncClient
from sync.policy import POLICIES, table
from sync.runner import NodeDatabase, sync_once

ROWS_PER_LEARNER = 50
PUSH_ROWS_PER_LEARNER = 10  # an enrollment and 9 lesson-progress rows
INSERT_BATCH = 10_000
BASELINE_BATCH = 2_000  # rows per transaction, as a pull batch (sync.protocol.DEFAULT_BATCH_ROWS)
PROBE_PAUSE_S = 0.05
PROBE_BASELINE_OPS = 200
PHONE_SHARE = 0.6
RESULT = "@@RESULT "
READY = "@@READY"
REPO = Path(__file__).resolve().parent.parent

TARGET_ROWS_S = 9_400
TARGET_RSS_MIB = 150
TARGET_BYTES_PER_ROW = 200
TARGET_INCREMENTAL_S = 0.5
TARGET_PUSH_ROWS_S = 2_000
TARGET_P95_RATIO = 2.0

COURSES = ("Mathematics", "English", "Kiswahili", "Science")
SECTIONS, LESSONS_PER_SECTION, QUIZ_QUESTIONS, CHOICES = 2, 5, 10, 4
FIRST = ("Achieng", "Wanjiru", "Kamau", "Otieno", "Njeri", "Mutua", "Chebet", "Kiprop", "Amina", "Baraka")
LAST = ("Odhiambo", "Mwangi", "Wafula", "Kariuki", "Mohamed", "Njoroge", "Ochieng", "Kilonzo", "Rotich", "Atieno")
BODY = (
    "Soma kwa makini. In this lesson we look at fractions: what a half and a quarter mean, how to add "
    "two fractions with the same denominator, and how to compare them on a number line. Try the examples "
    "with a friend, then answer the questions at the end. "
)


# Helpers ------------------------------------------------------------------------------------


def _status_kib(name: str) -> int:
    match = re.search(rf"^{name}:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak_rss() -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU of a process (/proc/<pid>/stat is world-readable)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu() -> float:
    """CPU of every PostgreSQL process on this machine (backends, WAL writer, checkpointer)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if (proc / "cmdline").read_bytes().startswith(b"postgres"):
                total += _cpu_seconds(proc.name)
    return total


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _latency(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": _percentile(values, 0.50) * 1000,
        "p95_ms": _percentile(values, 0.95) * 1000,
        "p99_ms": _percentile(values, 0.99) * 1000,
        "max_ms": max(values, default=float("nan")) * 1000,
    }


def _wrap_async(owner: Any, name: str, seconds: dict[str, float], key: str) -> None:
    """Time every call of an async function or method, in place (benchmark instrumentation).
    A name the code no longer has is skipped: its share then shows under "the rest"."""
    original = getattr(owner, name, None)
    if original is None:
        return

    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - started
            seconds[key + "_calls"] += 1

    setattr(owner, name, timed)


def _wrap_sync(owner: Any, name: str, seconds: dict[str, float], key: str) -> Any:
    """The same for a plain function; returns the original, to put back with ``setattr``."""
    original = getattr(owner, name, None)
    if original is None:
        return None

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            seconds[key] += time.perf_counter() - started
            seconds[key + "_calls"] += 1

    setattr(owner, name, timed)
    return original


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Seeding ------------------------------------------------------------------------------------

_ORDER = {t.name: i for i, t in enumerate(Base.metadata.sorted_tables)}


class _Full(Exception):
    pass


class Feed:
    """One feed's rows and outbox entries, numbered as change capture numbers them, flushed
    to PostgreSQL in bulk Core inserts."""

    def __init__(self, scope: str, *, limit: int | None = None, hlc_base_ms: int) -> None:
        self.scope = scope
        self.limit = limit
        self.seq = 0
        self.hlc_base_ms = hlc_base_ms
        self.rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.phones: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.counts: dict[str, int] = defaultdict(int)
        self.phone_count = 0

    def add(self, name: str, row: dict[str, Any], at: datetime) -> None:
        if self.limit is not None and self.seq >= self.limit:
            raise _Full
        self.seq += 1
        hlc = pack(self.hlc_base_ms + self.seq, 0)
        row.update(
            hlc=hlc, origin_node_id=CENTRAL_NODE_ID, created_at=at, updated_at=at, deleted_at=None, change_seq=self.seq
        )
        self.rows[name].append(row)
        self.counts[name] += 1
        self.outbox.append(
            {
                "id": new_id(),
                "scope": self.scope,
                "seq": self.seq,
                "table_name": name,
                "row_id": row["id"],
                "op": ChangeOp.UPSERT,
                "hlc": hlc,
                "base_hlc": 0,
                "origin_node_id": CENTRAL_NODE_ID,
                "created_at": at,
            }
        )

    def add_phone(self, row: dict[str, Any]) -> None:
        self.phones.append(row)
        self.phone_count += 1

    @property
    def pending(self) -> int:
        return len(self.outbox)

    async def flush(self, conn: AsyncConnection) -> None:
        if self.phones:
            await conn.execute(sa.insert(table("phones")), self.phones)
        for name in sorted(self.rows, key=lambda n: _ORDER[n]):
            await conn.execute(sa.insert(table(name)), self.rows[name])
        if self.outbox:
            await conn.execute(sa.insert(table("sync_outbox")), self.outbox)
        self.rows.clear()
        self.phones.clear()
        self.outbox.clear()


@dataclass
class CourseIds:
    id: uuid.UUID
    lessons: list[uuid.UUID] = field(default_factory=list)
    # quiz id -> [(question id, [choice ids, the first correct])]
    quizzes: list[tuple[uuid.UUID, list[tuple[uuid.UUID, list[uuid.UUID]]]]] = field(default_factory=list)


@dataclass
class School:
    institution_id: uuid.UUID
    name: str
    feed_rows: int
    counts: dict[str, int]
    phones: int
    learners: int


def _catalogue(feed: Feed, at: datetime) -> list[CourseIds]:
    courses = []
    for c, title in enumerate(COURSES):
        course = CourseIds(new_id())
        courses.append(course)
        feed.add(
            "courses",
            {
                "id": course.id,
                "institution_id": None,
                "slug": title.lower(),
                "title_en": f"{title} (Grade 7)",
                "title_sw": f"{title} (Darasa la 7)",
                "summary_en": f"The Grade 7 {title.lower()} syllabus, lesson by lesson.",
                "summary_sw": None,
                "access": CourseAccess.FREE,
                "is_published": True,
                "created_by_id": None,
            },
            at,
        )
        for s in range(SECTIONS):
            section_id = new_id()
            feed.add(
                "sections",
                {
                    "id": section_id,
                    "institution_id": None,
                    "course_id": course.id,
                    "position": s,
                    "title_en": f"Term {s + 1}",
                    "title_sw": f"Muhula {s + 1}",
                },
                at,
            )
            for p in range(LESSONS_PER_SECTION):
                lesson_id = new_id()
                course.lessons.append(lesson_id)
                feed.add(
                    "lessons",
                    {
                        "id": lesson_id,
                        "institution_id": None,
                        "section_id": section_id,
                        "course_id": course.id,
                        "position": p,
                        "title_en": f"{title} {s + 1}.{p + 1}",
                        "title_sw": f"Somo {s + 1}.{p + 1}",
                        "body_en": BODY * 3,
                        "body_sw": BODY,
                        "duration_minutes": 20,
                    },
                    at,
                )
            quiz_id = new_id()
            feed.add(
                "quizzes",
                {
                    "id": quiz_id,
                    "institution_id": None,
                    "course_id": course.id,
                    "section_id": section_id,
                    "title_en": f"{title}: term {s + 1} quiz",
                    "title_sw": f"Jaribio la muhula {s + 1}",
                    "position": s,
                    "pass_mark_percent": 50,
                    "max_attempts": None,
                    "is_final": s == SECTIONS - 1,
                    "is_published": True,
                },
                at,
            )
            questions = []
            for q in range(QUIZ_QUESTIONS):
                question_id = new_id()
                feed.add(
                    "questions",
                    {
                        "id": question_id,
                        "institution_id": None,
                        "quiz_id": quiz_id,
                        "position": q,
                        "prompt_en": f"Question {q + 1}: what is {q + 1}/{c + 4} of {(c + 4) * 6}?",
                        "prompt_sw": f"Swali {q + 1}",
                        "points": 1,
                    },
                    at,
                )
                choices = []
                for k in range(CHOICES):
                    choice_id = new_id()
                    choices.append(choice_id)
                    feed.add(
                        "question_choices",
                        {
                            "id": choice_id,
                            "institution_id": None,
                            "question_id": question_id,
                            "position": k,
                            "text_en": str((q + 1) * 6 + k),
                            "text_sw": None,
                            "is_correct": k == 0,
                        },
                        at,
                    )
                questions.append((question_id, choices))
            course.quizzes.append((quiz_id, questions))
    return courses


def _institution(feed: Feed, institution_id: uuid.UUID, number: int, name: str, at: datetime) -> None:
    feed.add(
        "institutions",
        {
            "id": institution_id,
            "name": name,
            "code": f"BSYNC{number:03d}",
            "country": "KE",
            "timezone": "Africa/Nairobi",
            "default_language": Language.EN,
            "vat_rate_bp": 1600,
            "unknown_phone_policy": UnknownPhonePolicy.REGISTER,
            "settings": {},
            "is_active": True,
        },
        at,
    )


def _learner(
    feed: Feed, rng: random.Random, institution_id: uuid.UUID, number: int, n: int, joined: datetime
) -> uuid.UUID:
    learner_id = new_id()
    phone_id = None
    if rng.random() < PHONE_SHARE:
        e164 = f"+2547{number:02d}{n:06d}"
        phone_id = natural_id("phone", e164)
        feed.add_phone(
            {
                "id": phone_id,
                "e164": e164,
                "network": Network.SAFARICOM,
                "verified_at": None,
                "created_at": joined,
                "updated_at": joined,
            }
        )
    body = f"{number:02d}{n:07d}"
    feed.add(
        "learners",
        {
            "id": learner_id,
            "institution_id": institution_id,
            "display_name": f"{rng.choice(FIRST)} {rng.choice(LAST)} {n}",
            "language": Language.SW if n % 3 == 0 else Language.EN,
            "phone_id": phone_id,
            "user_id": None,
            "account_no": body + luhn_check_digit(body),
            "pin_hash": None,
            "pin_failed_count": 0,
            "pin_locked_until": None,
            "grade": "Grade 7",
        },
        joined,
    )
    return learner_id


def _learning(
    feed: Feed,
    rng: random.Random,
    institution_id: uuid.UUID,
    learner_id: uuid.UUID,
    n: int,
    courses: list[CourseIds],
    joined: datetime,
) -> None:
    """49 rows: two enrollments, 14 lesson-progress rows, 3 attempts and 30 answers."""
    done, doing = courses[n % len(courses)], courses[(n + 1) % len(courses)]
    finished = joined + timedelta(days=rng.uniform(20, 40))
    for course, completed in ((done, finished), (doing, None)):
        feed.add(
            "enrollments",
            {
                "id": natural_id("enrollment", learner_id, course.id),
                "institution_id": institution_id,
                "learner_id": learner_id,
                "course_id": course.id,
                "status": EnrollmentStatus.COMPLETED if completed else EnrollmentStatus.ACTIVE,
                "enrolled_at": joined,
                "completed_at": completed,
            },
            joined,
        )
    progress = [(done, lesson, 100) for lesson in done.lessons] + [
        (doing, lesson, rng.choice((20, 50, 80, 100))) for lesson in doing.lessons[:4]
    ]
    for i, (course, lesson_id, percent) in enumerate(progress):
        seen = joined + timedelta(days=i * 2, minutes=rng.randint(0, 600))
        feed.add(
            "lesson_progress",
            {
                "id": natural_id("lesson_progress", learner_id, lesson_id),
                "institution_id": institution_id,
                "learner_id": learner_id,
                "lesson_id": lesson_id,
                "course_id": course.id,
                "percent": percent,
                "first_seen_at": seen,
                "last_seen_at": seen + timedelta(minutes=25),
                "completed_at": seen + timedelta(minutes=25) if percent == 100 else None,
            },
            seen,
        )
    for (quiz_id, questions), submitted in (
        (done.quizzes[0], True),
        (done.quizzes[1], True),
        (doing.quizzes[0], False),
    ):
        attempt_id = new_id()
        started = joined + timedelta(days=rng.uniform(5, 30))
        picks = [rng.randrange(CHOICES) if rng.random() < 0.35 else 0 for _ in questions]
        score = sum(1 for k in picks if k == 0)
        feed.add(
            "attempts",
            {
                "id": attempt_id,
                "institution_id": institution_id,
                "learner_id": learner_id,
                "quiz_id": quiz_id,
                "number": 1,
                "status": AttemptStatus.SUBMITTED if submitted else AttemptStatus.IN_PROGRESS,
                "channel": rng.choice((Channel.USSD, Channel.USSD, Channel.WEB, Channel.EDGE, Channel.APP)),
                "started_at": started,
                "submitted_at": started + timedelta(minutes=12) if submitted else None,
                "score_points": score if submitted else None,
                "max_points": len(questions) if submitted else None,
                "score_percent": score * 100 // len(questions) if submitted else None,
                "passed": score * 2 >= len(questions) if submitted else None,
            },
            started,
        )
        for q, ((question_id, choices), k) in enumerate(zip(questions, picks, strict=True)):
            answered = started + timedelta(minutes=q + 1)
            feed.add(
                "answers",
                {
                    "id": natural_id("answer", attempt_id, question_id),
                    "institution_id": institution_id,
                    "attempt_id": attempt_id,
                    "question_id": question_id,
                    "choice_id": choices[k],
                    "is_correct": (k == 0) if submitted else None,
                    "answered_at": answered,
                },
                answered,
            )


async def seed_school(
    conn: AsyncConnection,
    *,
    number: int,
    name: str,
    feed_rows: int | None,
    learners: int | None,
    courses: list[CourseIds],
    hlc_base_ms: int,
) -> School:
    """A school's feed: with ``feed_rows``, the full learning mix cut at exactly that many
    rows; with ``learners``, just that many learners (the schools whose edges push)."""
    institution_id = new_id()
    rng = random.Random(number)
    feed = Feed(str(institution_id), limit=feed_rows, hlc_base_ms=hlc_base_ms)
    start = datetime.now(UTC) - timedelta(days=120)
    _institution(feed, institution_id, number, name, start)
    total = learners if learners is not None else math.ceil(((feed_rows or 1) - 1) / ROWS_PER_LEARNER)
    made = 0
    try:
        for n in range(total):
            joined = start + timedelta(days=rng.uniform(0, 30), seconds=n)
            learner_id = _learner(feed, rng, institution_id, number, n, joined)
            made += 1
            if learners is None:
                _learning(feed, rng, institution_id, learner_id, n, courses, joined)
            if feed.pending >= INSERT_BATCH:
                await feed.flush(conn)
    except _Full:
        pass
    await feed.flush(conn)
    await conn.execute(sa.insert(SyncCounter), [{"scope": feed.scope, "value": feed.seq}])
    return School(institution_id, name, feed.seq, dict(feed.counts), feed.phone_count, made)


async def seed(url: str, args: argparse.Namespace) -> tuple[int, list[School], dict[str, int]]:
    """The catalogue, schools A and B and the pushing schools; returns the catalogue's size."""
    engine = create_engine(url)
    hlc_base_ms = int((datetime.now(UTC) - timedelta(days=1)).timestamp() * 1000)
    try:
        async with engine.begin() as conn:
            catalog = Feed(CATALOG_SCOPE, hlc_base_ms=hlc_base_ms)
            courses = _catalogue(catalog, datetime.now(UTC) - timedelta(days=200))
            await catalog.flush(conn)
            await conn.execute(sa.insert(SyncCounter), [{"scope": CATALOG_SCOPE, "value": catalog.seq}])
        schools = []
        plan: list[tuple[str, int | None, int | None]] = [
            ("Bench Academy A", args.rows, None),
            ("Bench Academy B", args.small_rows, None),
        ]
        plan += [
            (f"Bench Push School {i + 1}", None, args.push_rows // PUSH_ROWS_PER_LEARNER)
            for i in range(args.edges + 1)  # one more, to push alone first
        ]
        for number, (name, rows, learners) in enumerate(plan, start=1):
            async with engine.begin() as conn:
                schools.append(
                    await seed_school(
                        conn,
                        number=number,
                        name=name,
                        feed_rows=rows,
                        learners=learners,
                        courses=courses,
                        hlc_base_ms=hlc_base_ms,
                    )
                )
        # Committed: an ANALYZE in a transaction that rolls back leaves the planner nothing.
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(sa.text("VACUUM ANALYZE"))
        return catalog.seq, schools, dict(catalog.counts)
    finally:
        await engine.dispose()


# Children: each edge in a fresh process -----------------------------------------------------


def _emit(kind: str, payload: dict[str, Any] | None = None) -> None:
    sys.stdout.write((RESULT + json.dumps(payload) if kind == "result" else READY) + "\n")
    sys.stdout.flush()


async def _wait_go() -> None:
    if not await asyncio.to_thread(sys.stdin.readline):
        raise SystemExit("the benchmark went away")


async def _counts(db: NodeDatabase) -> dict[str, int]:
    names = [*POLICIES, "phones"]
    async with db.read() as session:
        return {
            name: int(await session.scalar(sa.select(sa.func.count()).select_from(table(name))) or 0) for name in names
        }


class Probe:
    """A learner at the school: reads a course outline with their progress, records progress."""

    def __init__(self, db: NodeDatabase, institution_id: uuid.UUID) -> None:
        self.db = db
        self.institution_id = institution_id
        self.learner_id: uuid.UUID | None = None
        self.course_id: uuid.UUID | None = None
        self.lessons: list[uuid.UUID] = []
        self.count = 0

    async def ready(self, stop: asyncio.Event) -> bool:
        """Wait for the first pull batch (the institution and the catalogue), then enroll."""
        from lms_domain.courses import service as courses
        from lms_domain.tenancy.service import create_learner

        while not stop.is_set():
            async with self.db.read() as session:
                institution = await session.get(Institution, self.institution_id)
                course_id = await session.scalar(
                    sa.select(Course.id).where(Course.slug == COURSES[0].lower(), Course.institution_id.is_(None))
                )
                lessons = list(
                    await session.scalars(sa.select(Lesson.id).where(Lesson.course_id == course_id).order_by(Lesson.id))
                )
            if institution is not None and course_id is not None and lessons:
                self.course_id, self.lessons = course_id, lessons
                async with self.db.write() as session, session.begin():
                    learner = await create_learner(
                        session=session, institution_id=self.institution_id, display_name="Probe Learner"
                    )
                    await courses.enroll(
                        session=session, learner_id=learner.id, course_id=course_id, clock=self.db.clock
                    )
                self.learner_id = learner.id
                return True
            await asyncio.sleep(0.02)
        return False

    async def once(self) -> tuple[float, float]:
        from lms_domain.courses import progress, service

        assert self.learner_id is not None and self.course_id is not None
        started = time.perf_counter()
        async with self.db.read() as session:
            await progress.lesson_statuses(session=session, learner_id=self.learner_id, course_id=self.course_id)
        read = time.perf_counter()
        self.count += 1
        async with self.db.write() as session, session.begin():
            await service.record_progress(
                session=session,
                learner_id=self.learner_id,
                lesson_id=self.lessons[self.count % len(self.lessons)],
                percent=1 + self.count % 99,  # below 100: no completion bookkeeping on each call
                clock=self.db.clock,
            )
        return read - started, time.perf_counter() - read

    async def loop(self, stop: asyncio.Event, *, limit: int | None = None) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"read": [], "write": [], "both": []}
        while not stop.is_set() and (limit is None or len(out["both"]) < limit):
            read, write = await self.once()
            out["read"].append(read)
            out["write"].append(write)
            out["both"].append(read + write)
            await asyncio.sleep(PROBE_PAUSE_S)
        return out


async def child_pull(spec: dict[str, Any]) -> dict[str, Any]:
    """Enroll a new edge, then one ``sync_once``: the first copy of its school."""
    files = NodeFiles(Path(spec["data_dir"]))
    rss_imported = _status_kib("VmRSS")
    started = time.perf_counter()
    identity = await init_node(files, central_url=spec["central_url"], code=spec["code"])
    init_s = time.perf_counter() - started
    timing: dict[str, float] = defaultdict(float)
    _wrap_async(sync.runner, "apply_batch", timing, "apply_batch_s")
    _wrap_async(SyncClient, "pull", timing, "pull_request_s")
    _wrap_sync(sync.apply, "decode_rows", timing, "decode_rows_s")
    _wrap_async(sync.apply, "_log_lost_local_edits", timing, "lost_edit_check_s")
    _wrap_sync(sync.apply, "upsert", timing, "upsert_build_s")
    out: dict[str, Any] = {"init_s": init_s, "rss_imported_mib": rss_imported / 1024}
    async with open_node(files) as node, aiohttp.ClientSession() as http:
        client = client_for(node, http, timeout_s=300)
        lifetime_peak = _status_kib("VmHWM")
        _reset_peak_rss()
        out["rss_before_sync_mib"] = _status_kib("VmRSS") / 1024
        cpu = _cpu_seconds()
        stop = asyncio.Event()
        probe = Probe(node.db, identity.institution_id) if spec.get("probe") else None
        probe_task = None
        if probe is not None:

            async def during() -> dict[str, list[float]]:
                if not await probe.ready(stop):
                    return {"read": [], "write": [], "both": []}
                return await probe.loop(stop)

            probe_task = asyncio.create_task(during())
        began = time.perf_counter()
        report = await sync_once(node.db, client, batch_rows=spec["batch_rows"])
        seconds = time.perf_counter() - began
        stop.set()
        out["cpu_s"] = _cpu_seconds() - cpu
        out["sync_peak_rss_mib"] = _status_kib("VmHWM") / 1024
        out["peak_rss_mib"] = max(lifetime_peak, _status_kib("VmHWM")) / 1024
        out["seconds"] = seconds
        out["report"] = report.summary()
        out["timing"] = dict(timing)
        if probe is not None and probe_task is not None:
            during_sync = await probe_task
            idle = await probe.loop(asyncio.Event(), limit=max(PROBE_BASELINE_OPS, len(during_sync["both"])))
            out["probe"] = {
                "during": {k: _latency(v) for k, v in during_sync.items()},
                "idle": {k: _latency(v) for k, v in idle.items()},
            }
        out["counts"] = await _counts(node.db)
        out["edge_db_mib"] = files.database.stat().st_size / 2**20
    return out


async def child_incremental(spec: dict[str, Any]) -> dict[str, Any]:
    """An edge that already holds its school: warm up, wait, then the timed small syncs."""
    files = NodeFiles(Path(spec["data_dir"]))
    async with open_node(files) as node, aiohttp.ClientSession() as http:
        client = client_for(node, http)
        warm = await sync_once(node.db, client)  # a token, as a running node holds one
        _emit("ready")
        await _wait_go()
        began = time.perf_counter()
        changes = await sync_once(node.db, client)
        changes_s = time.perf_counter() - began
        began = time.perf_counter()
        idle = await sync_once(node.db, client)
        idle_s = time.perf_counter() - began
    return {
        "warmup": warm.summary(),
        "changes": changes.summary(),
        "changes_s": changes_s,
        "noop": idle.summary(),
        "noop_s": idle_s,
    }


async def _write_changes(node_db: NodeDatabase, institution_id: uuid.UUID, count: int) -> float:
    """``count`` changes through the ORM on the edge: per learner an enrollment and 9 lesson
    progress rows, 100 rows per transaction (a class's worth), change capture on."""
    async with node_db.read() as session:
        learners = list(
            await session.scalars(
                sa.select(Learner.id).where(Learner.institution_id == institution_id).order_by(Learner.id)
            )
        )
        course_id = await session.scalar(sa.select(Course.id).where(Course.slug == COURSES[0].lower()))
        lessons = list(
            await session.scalars(sa.select(Lesson.id).where(Lesson.course_id == course_id).order_by(Lesson.id))
        )
    assert course_id is not None and len(lessons) >= PUSH_ROWS_PER_LEARNER - 1
    per_txn = 100 // PUSH_ROWS_PER_LEARNER
    wanted = learners[: count // PUSH_ROWS_PER_LEARNER]
    now = node_db.clock.now()
    started = time.perf_counter()
    for lo in range(0, len(wanted), per_txn):
        async with node_db.write() as session, session.begin():
            for learner_id in wanted[lo : lo + per_txn]:
                session.add(
                    Enrollment(
                        id=natural_id("enrollment", learner_id, course_id),
                        institution_id=institution_id,
                        learner_id=learner_id,
                        course_id=course_id,
                        status=EnrollmentStatus.ACTIVE,
                        enrolled_at=now,
                    )
                )
                for k, lesson_id in enumerate(lessons[: PUSH_ROWS_PER_LEARNER - 1]):
                    session.add(
                        LessonProgress(
                            id=natural_id("lesson_progress", learner_id, lesson_id),
                            institution_id=institution_id,
                            learner_id=learner_id,
                            lesson_id=lesson_id,
                            course_id=course_id,
                            percent=100 if k < 5 else 40,
                            first_seen_at=now,
                            last_seen_at=now,
                            completed_at=now if k < 5 else None,
                        )
                    )
    return time.perf_counter() - started


async def child_push(spec: dict[str, Any]) -> dict[str, Any]:
    """A new edge: first copy, ``changes`` local writes, then (on the signal) the timed sync."""
    files = NodeFiles(Path(spec["data_dir"]))
    identity = await init_node(files, central_url=spec["central_url"], code=spec["code"])
    async with open_node(files) as node, aiohttp.ClientSession() as http:
        client = client_for(node, http, timeout_s=300)
        first = await sync_once(node.db, client)
        write_s = await _write_changes(node.db, identity.institution_id, spec["changes"])
        async with node.db.read() as session:
            pending = await sync.outbox.pending_count(session)
        _emit("ready")
        await _wait_go()
        marks: dict[str, float] = {}
        original_pull = client.pull

        async def marked_pull(*args: Any, **kwargs: Any) -> dict[str, Any]:
            # The first pull request of the sync: its push half is over.
            marks.setdefault("pull_start", time.monotonic())
            return await original_pull(*args, **kwargs)

        patched = "pull"
        setattr(client, patched, marked_pull)
        began = time.monotonic()
        report = await sync_once(node.db, client, batch_rows=spec["batch_rows"])
        ended = time.monotonic()
        async with node.db.read() as session:
            left = await sync.outbox.pending_count(session)
    push_end = marks.get("pull_start", ended)
    return {
        "node_id": str(identity.node_id),
        "first_pull": first.summary(),
        "write_s": write_s,
        "outbox_before": pending,
        "outbox_after": left,
        "push_start": began,
        "push_end": push_end,
        "push_s": push_end - began,
        "sync_s": ended - began,
        "report": report.summary(),
    }


def child_baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The same rows as the edge holds, with plain sqlite3 executemany into a fresh schema."""
    target = Path(spec["target"])
    upgrade(f"sqlite+aiosqlite:///{target}")
    source = sqlite3.connect(spec["source"])
    dest = sqlite3.connect(target)
    # The edge's apply engine's pragmas (lms_domain.db): WAL, synchronous NORMAL, no FK checks.
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=OFF"):
        dest.execute(f"PRAGMA {pragma}")
    names = sorted([*POLICIES, "phones"], key=lambda n: _ORDER[n])
    seconds = 0.0
    counts: dict[str, int] = {}
    for name in names:
        width = len(source.execute(f"SELECT * FROM {name} LIMIT 0").description)  # noqa: S608 - our table names
        sql = f"INSERT INTO {name} VALUES ({', '.join('?' * width)})"  # noqa: S608
        cursor = source.execute(f"SELECT * FROM {name}")  # noqa: S608
        counts[name] = 0
        while chunk := cursor.fetchmany(BASELINE_BATCH):
            began = time.perf_counter()
            dest.executemany(sql, chunk)
            dest.commit()
            seconds += time.perf_counter() - began
            counts[name] += len(chunk)
    source.close()
    dest.close()
    return {"seconds": seconds, "counts": counts, "peak_rss_mib": _status_kib("VmHWM") / 1024}


def run_child(raw: str) -> None:
    spec = json.loads(raw)
    kind = spec["kind"]
    try:
        if kind == "baseline":
            result = child_baseline(spec)
        else:
            handler = {"pull": child_pull, "incremental": child_incremental, "push": child_push}[kind]
            result = asyncio.run(handler(spec))
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1) from None
    _emit("result", result)


class Child:
    """An edge process: lines on stdout (``@@READY``, ``@@RESULT {...}``), ``go`` on stdin."""

    def __init__(self, proc: asyncio.subprocess.Process, label: str) -> None:
        self.proc = proc
        self.label = label
        self.errors: list[str] = []
        self._drain = asyncio.create_task(self._read_stderr())

    @classmethod
    async def start(cls, spec: dict[str, Any], label: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.sync_bench",
            "--child",
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
            limit=2**22,
        )
        return cls(proc, label)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.errors.append(line.decode(errors="replace").rstrip())
            del self.errors[:-40]

    async def _line(self) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await self.proc.stdout.readline()
            if not raw:
                await self.proc.wait()
                await self._drain
                raise RuntimeError(f"{self.label} exited {self.proc.returncode}:\n" + "\n".join(self.errors))
            line = raw.decode().rstrip("\n")
            if line.startswith("@@"):
                return line

    async def ready(self) -> None:
        line = await self._line()
        if line != READY:
            raise RuntimeError(f"{self.label}: expected ready, got {line[:200]}")

    async def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        await self.proc.stdin.drain()

    async def result(self) -> dict[str, Any]:
        line = await self._line()
        if not line.startswith(RESULT):
            raise RuntimeError(f"{self.label}: expected a result, got {line[:200]}")
        await self.proc.wait()
        await self._drain
        result: dict[str, Any] = json.loads(line[len(RESULT) :])
        return result


# The central server ---------------------------------------------------------------------------


@dataclass
class Central:
    url: str
    app: Any
    runner: Any
    timing: dict[str, float]

    def reset(self) -> dict[str, float]:
        before = dict(self.timing)
        self.timing.clear()
        return before


async def start_central(db_url: str) -> Central:
    from aiohttp import web

    import sync.http
    import sync.receive
    from server.app import create_app
    from server.settings import DatabaseSettings, SchedulerSettings, Settings

    os.environ["SOMO_SCHEDULER__ENABLED"] = "false"
    timing: dict[str, float] = defaultdict(float)
    # Per request, not per row: a few hundred calls, so the instrumentation costs nothing.
    _wrap_async(sync.http, "read_batch", timing, "read_batch_s")
    _wrap_sync(sync.http, "dumps", timing, "dumps_s")
    _wrap_sync(sync.http, "compress", timing, "gzip_s")
    _wrap_sync(sync.http, "parse_chunks", timing, "parse_push_s")
    _wrap_async(sync.receive.Receiver, "apply", timing, "receive_apply_s")
    settings = Settings(database=DatabaseSettings(url=db_url), scheduler=SchedulerSettings(enabled=False))
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return Central(f"http://127.0.0.1:{port}", app, runner, timing)


async def register_edge(central: Central, institution_id: uuid.UUID, name: str) -> str:
    """An admin of the school registers a node (the service behind POST /api/v1/edge-nodes)."""
    from lms_domain.access import Actor
    from lms_domain.platform import edge_nodes
    from lms_domain.tenancy.models import Role
    from server.keys import sessionmaker_key

    actor = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=institution_id)
    async with central.app[sessionmaker_key]() as session, session.begin():
        registered = await edge_nodes.register(
            session=session, actor=actor, data=edge_nodes.EdgeNodeIn(name=name), now=datetime.now(UTC)
        )
    return registered.enrollment_code


async def rename_learners(central: Central, institution_id: uuid.UUID, count: int, per_txn: int = 10) -> None:
    """``count`` learner renames through the ORM on the central server: change capture runs."""
    from server.keys import sessionmaker_key

    makers = central.app[sessionmaker_key]
    for offset in range(0, count, per_txn):
        async with makers() as session, session.begin():
            learners = await session.scalars(
                sa.select(Learner)
                .where(Learner.institution_id == institution_id)
                .order_by(Learner.id)
                .offset(offset)
                .limit(min(per_txn, count - offset))
            )
            for learner in learners:
                learner.display_name = learner.display_name + " (renamed)"


async def central_counts(central: Central, node_ids: list[str]) -> dict[str, int]:
    from lms_domain.changefeed.models import SyncRejection
    from server.keys import sessionmaker_key

    ids = [uuid.UUID(n) for n in node_ids]
    async with central.app[sessionmaker_key]() as session:
        out = {}
        for model in (Enrollment, LessonProgress):
            out[model.__tablename__] = int(
                await session.scalar(sa.select(sa.func.count()).select_from(model).where(model.origin_node_id.in_(ids)))
                or 0
            )
        out["rejections"] = int(await session.scalar(sa.select(sa.func.count()).select_from(SyncRejection)) or 0)
        return out


async def offline_feed_read(central: Central, institution_id: uuid.UUID, batch_rows: int) -> dict[str, float]:
    """The whole feed read as the pull endpoint reads it, with no HTTP: read_batch, then the
    answer encoded and gzipped; per-row size checks inside read_batch timed apart."""
    import sync.feed
    from server.keys import read_sessionmaker_key
    from sync.codec import compress, dumps
    from sync.protocol import DEFAULT_BATCH_BYTES, Cursor, SyncScope

    timing: dict[str, float] = defaultdict(float)
    patched = "dumps"
    original = _wrap_sync(sync.feed, patched, timing, "row_size_dumps_s")
    scope = SyncScope(institution_id, uuid.uuid4())
    cursor = Cursor()
    rows = 0
    cpu = _cpu_seconds()
    began = time.perf_counter()
    try:
        while True:
            t0 = time.perf_counter()
            async with central.app[read_sessionmaker_key]() as session:
                batch = await sync.feed.read_batch(
                    session, scope, cursor, max_rows=batch_rows, max_bytes=DEFAULT_BATCH_BYTES
                )
            t1 = time.perf_counter()
            raw = dumps(batch.document())
            t2 = time.perf_counter()
            body = compress(raw)
            t3 = time.perf_counter()
            timing["read_batch_s"] += t1 - t0
            timing["dumps_s"] += t2 - t1
            timing["gzip_s"] += t3 - t2
            timing["raw_bytes"] += len(raw)
            timing["gzip_bytes"] += len(body)
            timing["batches"] += 1
            rows += batch.rows
            cursor = batch.cursor
            if not batch.more:
                break
    finally:
        if original is not None:
            setattr(sync.feed, patched, original)
    timing["seconds"] = time.perf_counter() - began
    timing["cpu_s"] = _cpu_seconds() - cpu
    timing["rows"] = rows
    return dict(timing)


# Running ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "nproc": os.cpu_count()}
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    info["cpu"] = cpu.group(1).strip() if cpu else platform.processor()
    mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    info["load_average"] = os.getloadavg()
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(REPO)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, check=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        info["commit"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
        info["dirty_files"] = [line[3:] for line in dirty.stdout.splitlines()]
    return info


async def _admin(dsn: str, statement: str) -> None:
    engine = create_async_engine(dsn.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@dataclass
class Phase:
    server_cpu: float = 0.0
    pg_cpu: float = 0.0
    began: float = 0.0

    @classmethod
    def start(cls) -> Phase:
        return cls(_cpu_seconds(), _postgres_cpu(), time.perf_counter())

    def done(self) -> dict[str, float]:
        return {
            "wall_s": time.perf_counter() - self.began,
            "server_cpu_s": _cpu_seconds() - self.server_cpu,
            "postgres_cpu_s": _postgres_cpu() - self.pg_cpu,
        }


async def pull_phase(
    central: Central,
    school: School,
    workdir: Path,
    label: str,
    *,
    probe: bool,
    batch_rows: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    code = await register_edge(central, school.institution_id, label)
    data_dir = workdir / label
    central.reset()
    phase = Phase.start()
    spec = {
        "kind": "pull",
        "data_dir": str(data_dir),
        "central_url": central.url,
        "code": code,
        "probe": probe,
        "batch_rows": batch_rows,
    }
    result = await (await Child.start(spec, label)).result()
    result["central"] = phase.done() | central.reset()
    result["data_dir"] = str(data_dir)
    report = result["report"]
    rows = report["pulled_rows"]
    result["rows_per_s"] = rows / result["seconds"]
    result["bytes_per_row"] = report["bytes_down"] / rows if rows else None
    say(
        f"{label}: {rows:,} rows in {result['seconds']:.1f} s = {result['rows_per_s']:,.0f} rows/s, "
        f"{result['bytes_per_row']:.1f} B/row, peak RSS {result['peak_rss_mib']:.0f} MiB"
    )
    return result


def _check_counts(result: dict[str, Any], school: School, catalogue: dict[str, int]) -> list[str]:
    problems = []
    expected = defaultdict(int, catalogue)
    for name, count in school.counts.items():
        expected[name] += count
    got = result["counts"]
    for name, want in expected.items():
        have = got.get(name, 0) - (1 if result.get("probe") and name in ("learners", "enrollments") else 0)
        if have != want:
            problems.append(f"{name}: {have:,} on the edge, {want:,} seeded")
    if got.get("phones", 0) < school.phones:
        problems.append(f"phones: {got.get('phones', 0):,} on the edge, {school.phones:,} seeded")
    if result["report"]["pulled_rows"] != sum(expected.values()):
        problems.append(f"pulled {result['report']['pulled_rows']:,} rows, expected {sum(expected.values()):,}")
    return problems


async def push_phase(
    central: Central,
    schools: list[School],
    workdir: Path,
    args: argparse.Namespace,
    say: Callable[[str], None],
    *,
    label: str,
) -> dict[str, Any]:
    children = []
    for i, school in enumerate(schools):
        code = await register_edge(central, school.institution_id, f"{label}-{i + 1}")
        spec = {
            "kind": "push",
            "data_dir": str(workdir / f"{label}-{i + 1}"),
            "central_url": central.url,
            "code": code,
            "changes": args.push_rows,
            "batch_rows": args.batch_rows,
        }
        children.append(await Child.start(spec, f"{label}-{i + 1}"))
    await asyncio.gather(*(c.ready() for c in children))
    say(f"{len(children)} edges ready, {args.push_rows:,} changes each in their outbox: go")
    central.reset()
    phase = Phase.start()
    await asyncio.gather(*(c.go() for c in children))
    results = await asyncio.gather(*(c.result() for c in children))
    usage = phase.done() | central.reset()
    pushed = sum(r["report"]["pushed_rows"] for r in results)
    window = max(r["push_end"] for r in results) - min(r["push_start"] for r in results)
    per_edge = [r["report"]["pushed_rows"] / r["push_s"] for r in results]
    verify = await central_counts(central, [r["node_id"] for r in results])
    problems = []
    want_lp = len(results) * (args.push_rows // PUSH_ROWS_PER_LEARNER) * (PUSH_ROWS_PER_LEARNER - 1)
    want_en = len(results) * (args.push_rows // PUSH_ROWS_PER_LEARNER)
    if verify["lesson_progress"] != want_lp or verify["enrollments"] != want_en:
        problems.append(f"central holds {verify}, expected {want_en} enrollments and {want_lp} progress rows")
    if verify["rejections"]:
        problems.append(f"{verify['rejections']} rows rejected")
    if any(r["outbox_after"] for r in results):
        problems.append("an outbox was not emptied")
    out = {
        "edges": len(results),
        "rows_per_edge": args.push_rows,
        "pushed_rows": pushed,
        "aggregate_rows_per_s": pushed / window,
        "window_s": window,
        "per_edge_rows_per_s": per_edge,
        "per_edge_min": min(per_edge),
        "per_edge_median": sorted(per_edge)[len(per_edge) // 2],
        "echo_pulled_rows": sum(r["report"]["pulled_rows"] for r in results),
        "echo_bytes_down": sum(r["report"]["bytes_down"] for r in results),
        # Includes serving the echo pulls that overlap the window (see the docstring).
        "central_cpu_us_per_pushed_row": usage["server_cpu_s"] / pushed * 1e6,
        "postgres_cpu_us_per_pushed_row": usage["postgres_cpu_s"] / pushed * 1e6,
        "edge_write_rows_per_s": [args.push_rows / r["write_s"] for r in results],
        "central": usage,
        "edges_detail": results,
        "problems": problems,
    }
    say(
        f"{label}: {pushed:,} rows from {len(results)} edge(s) in {window:.1f} s = {out['aggregate_rows_per_s']:,.0f} rows/s, "
        f"per edge min {out['per_edge_min']:,.0f} median {out['per_edge_median']:,.0f} rows/s"
    )
    return out


async def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    name = f"somo_bench_sync_{os.getpid()}"
    url = args.postgres.replace("postgresql://", "postgresql+asyncpg://", 1).rsplit("/", 1)[0] + f"/{name}"
    await _admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await _admin(args.postgres, f'CREATE DATABASE "{name}"')
    out: dict[str, Any] = {"machine": machine(), "config": {k: v for k, v in vars(args).items() if k != "child"}}
    central: Central | None = None
    try:
        await asyncio.to_thread(upgrade, url, "head")
        began = time.perf_counter()
        catalogue_rows, schools, catalogue = await seed(url, args)
        big, small, pushers = schools[0], schools[1], schools[2:]
        out["seed"] = {
            "seconds": time.perf_counter() - began,
            "catalogue_rows": catalogue_rows,
            "schools": [
                {
                    "name": s.name,
                    "feed_rows": s.feed_rows,
                    "learners": s.learners,
                    "phones": s.phones,
                    "counts": s.counts,
                }
                for s in schools
            ],
        }
        say(f"seeded {sum(s.feed_rows for s in schools) + catalogue_rows:,} rows in {out['seed']['seconds']:.1f} s")
        central = await start_central(url)
        with tempfile.TemporaryDirectory(prefix="somo-sync-bench-") as tmp:
            workdir = Path(tmp)
            pulls = []
            for school, label in ((big, "edge-a"), (small, "edge-b")):
                result = await pull_phase(
                    central, school, workdir, label, probe=False, batch_rows=args.batch_rows, say=say
                )
                result["school_rows"] = school.feed_rows
                result["problems"] = _check_counts(result, school, catalogue)
                pulls.append(result)
            out["pulls"] = pulls
            out["feed_read"] = await offline_feed_read(central, big.institution_id, args.batch_rows)
            say(
                f"feed read in process: {out['feed_read']['rows']:,.0f} rows in {out['feed_read']['seconds']:.1f} s "
                f"(read_batch {out['feed_read']['read_batch_s']:.1f} s, of which per-row size checks "
                f"{out['feed_read'].get('row_size_dumps_s', 0.0):.1f} s)"
            )

            spec = {"kind": "baseline", "source": pulls[0]["data_dir"] + "/edge.db", "target": str(workdir / "raw.db")}
            baseline = await (await Child.start(spec, "baseline")).result()
            baseline["rows"] = pulls[0]["report"]["pulled_rows"]
            baseline["rows_per_s"] = baseline["rows"] / baseline["seconds"]
            out["baseline"] = baseline
            say(f"baseline: sqlite3 executemany {baseline['rows']:,} rows in {baseline['seconds']:.1f} s")

            child = await Child.start({"kind": "incremental", "data_dir": pulls[0]["data_dir"]}, "incremental")
            await child.ready()
            await rename_learners(central, big.institution_id, args.changes)
            central.reset()
            await child.go()
            out["incremental"] = await child.result()
            out["incremental"]["central"] = central.reset()
            say(
                f"incremental: {out['incremental']['changes']['pulled_rows']} rows in "
                f"{out['incremental']['changes_s']:.3f} s; no-op sync {out['incremental']['noop']['requests']} "
                f"request(s), {out['incremental']['noop']['bytes_down']} B down"
            )

            out["push_solo"] = await push_phase(central, pushers[:1], workdir, args, say, label="solo")
            out["push"] = await push_phase(central, pushers[1:], workdir, args, say, label="push")

            if args.latency:
                result = await pull_phase(
                    central, big, workdir, "edge-a-probe", probe=True, batch_rows=args.batch_rows, say=say
                )
                out["latency"] = result
                probe = result["probe"]
                say(
                    f"learner read+write p95: {probe['during']['both']['p95_ms']:.0f} ms during the pull, "
                    f"{probe['idle']['both']['p95_ms']:.0f} ms idle"
                )
    finally:
        if central is not None:
            await central.runner.cleanup()
        await _admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out["machine"]["load_average_after"] = os.getloadavg()
    return out


# Reporting ----------------------------------------------------------------------------------


def verdicts(out: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(measure, value, target, met) rows for the table."""
    big, small = out["pulls"]
    rows: list[tuple[str, str, str, bool | None]] = []
    rows.append(
        (
            f"initial pull, {big['report']['pulled_rows']:,} rows",
            f"{big['rows_per_s']:,.0f} rows/s ({big['seconds']:.1f} s)",
            f">= {TARGET_ROWS_S:,} rows/s",
            big["rows_per_s"] >= TARGET_ROWS_S,
        )
    )
    rows.append(
        (
            f"initial pull, {small['report']['pulled_rows']:,} rows",
            f"{small['rows_per_s']:,.0f} rows/s ({small['seconds']:.1f} s)",
            f">= {TARGET_ROWS_S:,} rows/s",
            small["rows_per_s"] >= TARGET_ROWS_S,
        )
    )
    base = out["baseline"]
    rows.append(
        (
            "baseline: sqlite3 executemany, same rows",
            f"{base['rows_per_s']:,.0f} rows/s ({base['seconds']:.1f} s)",
            f"sync = {big['rows_per_s'] / base['rows_per_s']:.0%} of it",
            None,
        )
    )
    for r in (big, small):
        rows.append(
            (
                f"edge peak RSS, {r['report']['pulled_rows']:,} rows",
                f"{r['peak_rss_mib']:.0f} MiB (sync from {r['rss_before_sync_mib']:.0f})",
                f"<= {TARGET_RSS_MIB} MiB",
                r["peak_rss_mib"] <= TARGET_RSS_MIB,
            )
        )
    growth = big["peak_rss_mib"] - small["peak_rss_mib"]
    rows.append(
        (
            "peak RSS growth, 5x the rows",
            f"{growth:+.1f} MiB",
            "flat (< 10 MiB)",
            abs(growth) < 10,
        )
    )
    rows.append(
        (
            "bytes on the wire per row",
            f"{big['bytes_per_row']:.1f} B ({big['report']['bytes_down'] / 2**20:.1f} MiB gzip)",
            f"<= {TARGET_BYTES_PER_ROW} B",
            big["bytes_per_row"] <= TARGET_BYTES_PER_ROW,
        )
    )
    inc = out["incremental"]
    rows.append(
        (
            f"incremental sync, {inc['changes']['pulled_rows']} changes",
            f"{inc['changes_s']:.3f} s, {inc['changes']['requests']} requests, {inc['changes']['bytes_down']:,} B",
            f"<= {TARGET_INCREMENTAL_S} s",
            inc["changes_s"] <= TARGET_INCREMENTAL_S,
        )
    )
    rows.append(
        (
            "no-op sync",
            f"{inc['noop_s']:.3f} s, {inc['noop']['requests']} request, {inc['noop']['bytes_down']} B down, "
            f"{inc['noop']['bytes_up']} B up",
            "1 request",
            inc["noop"]["requests"] == 1,
        )
    )
    solo = out["push_solo"]
    rows.append(
        (
            f"push, 1 edge x {solo['rows_per_edge']:,} rows alone",
            f"{solo['per_edge_min']:,.0f} rows/s",
            "",
            None,
        )
    )
    push = out["push"]
    rows.append(
        (
            f"push, {push['edges']} edges x {push['rows_per_edge']:,} rows at once",
            f"per edge min {push['per_edge_min']:,.0f}, median {push['per_edge_median']:,.0f} rows/s; "
            f"aggregate {push['aggregate_rows_per_s']:,.0f} rows/s",
            f">= {TARGET_PUSH_ROWS_S:,} rows/s per edge",
            push["per_edge_min"] >= TARGET_PUSH_ROWS_S,
        )
    )
    if "latency" in out:
        probe = out["latency"]["probe"]
        during, idle = probe["during"]["both"], probe["idle"]["both"]
        rows.append(
            (
                "learner read+write p95 during the pull",
                f"{during['p95_ms']:.0f} ms vs {idle['p95_ms']:.0f} ms idle (n={during['n']}, {idle['n']})",
                f"<= {TARGET_P95_RATIO:.0f}x idle",
                during["p95_ms"] <= TARGET_P95_RATIO * idle["p95_ms"],
            )
        )
        rows.append(
            (
                "pull rate with learners using the edge",
                f"{out['latency']['rows_per_s']:,.0f} rows/s",
                "",
                None,
            )
        )
    return rows


def render(out: dict[str, Any]) -> bool:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    info = out["machine"]
    table = Table(
        title=f"Offline sync on loopback, PostgreSQL central, SQLite edge\n{info['cpu']}, {info['nproc']} cores, "
        f"Python {info['python']}, load average {info['load_average'][0]:.1f} before, "
        f"{info['load_average_after'][0]:.1f} after"
    )
    for column in ("measure", "value", "target", "met"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    ok = True
    for measure, value, target, met in verdicts(out):
        ok &= met is not False
        table.add_row(measure, value, target, "-" if met is None else ("[green]yes[/]" if met else "[red]no[/]"))
    console.print(table)

    big = out["pulls"][0]
    t: dict[str, float] = defaultdict(float, big["timing"])
    c: dict[str, float] = defaultdict(float, big["central"])
    rest = big["seconds"] - t["pull_request_s"] - t["apply_batch_s"]
    split = Table(title=f"Where the {big['report']['pulled_rows']:,}-row pull spent its {big['seconds']:.1f} s")
    for column in ("side", "part", "seconds", "share"):
        split.add_column(column, justify="left" if column in ("side", "part") else "right")
    parts = [
        ("edge", "waiting for pull answers (server, loopback, gunzip, JSON)", t["pull_request_s"]),
        ("edge", "apply_batch: decoding rows (codec.decode_rows)", t["decode_rows_s"]),
        ("edge", "apply_batch: lost-edit check (outbox lookup, if the code has it)", t["lost_edit_check_s"]),
        ("edge", "apply_batch: building the merge statements (merge.upsert)", t["upsert_build_s"]),
        (
            "edge",
            "apply_batch: running them (SQLAlchemy binds, SQLite) and the rest",
            t["apply_batch_s"] - t["decode_rows_s"] - t["lost_edit_check_s"] - t["upsert_build_s"],
        ),
        ("edge", "commits, cursor, bookkeeping", rest),
        ("central", "read_batch (outbox page, rows, per-row encoding)", c.get("read_batch_s", 0.0)),
        ("central", "JSON of the answer", c.get("dumps_s", 0.0)),
        ("central", "gzip of the answer", c.get("gzip_s", 0.0)),
    ]
    for side, part, seconds in parts:
        split.add_row(side, part, f"{seconds:.2f}", f"{seconds / big['seconds']:.0%}")
    split.add_row("cpu", "edge process", f"{big['cpu_s']:.1f}", f"{big['cpu_s'] / big['seconds']:.0%}")
    split.add_row("cpu", "central process", f"{c['server_cpu_s']:.1f}", f"{c['server_cpu_s'] / big['seconds']:.0%}")
    split.add_row("cpu", "PostgreSQL", f"{c['postgres_cpu_s']:.1f}", f"{c['postgres_cpu_s'] / big['seconds']:.0%}")
    fr: dict[str, float] = defaultdict(float, out["feed_read"])
    split.add_row(
        "central",
        f"in process, no HTTP: the whole feed read ({fr['batches']:.0f} batches)",
        f"{fr['seconds']:.2f}",
        "",
    )
    split.add_row("", "  of which read_batch", f"{fr['read_batch_s']:.2f}", f"{fr['read_batch_s'] / fr['seconds']:.0%}")
    split.add_row(
        "",
        "    of which per-row size checks (dumps)",
        f"{fr['row_size_dumps_s']:.2f}",
        f"{fr['row_size_dumps_s'] / fr['seconds']:.0%}",
    )
    split.add_row("", "  JSON of the answers", f"{fr['dumps_s']:.2f}", f"{fr['dumps_s'] / fr['seconds']:.0%}")
    split.add_row("", "  gzip of the answers", f"{fr['gzip_s']:.2f}", f"{fr['gzip_s'] / fr['seconds']:.0%}")
    console.print(split)
    problems = [p for r in out["pulls"] for p in r["problems"]] + out["push_solo"]["problems"] + out["push"]["problems"]
    for problem in problems:
        console.print(f"[red]check failed: {problem}[/]")
    return ok and not problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=250_000, help="rows in school A's feed (the large initial pull)")
    parser.add_argument("--small-rows", type=int, default=50_000, help="rows in school B's feed (RSS flatness)")
    parser.add_argument("--edges", type=int, default=10, help="edges pushing at once")
    parser.add_argument("--push-rows", type=int, default=5_000, help="changes each pushing edge holds")
    parser.add_argument("--changes", type=int, default=100, help="central changes for the incremental sync")
    parser.add_argument("--batch-rows", type=int, default=2_000, help="rows per pull and push batch (the default)")
    parser.add_argument("--no-latency", dest="latency", action="store_false", help="skip the learner-latency pull")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args.child)
        return
    if args.push_rows % PUSH_ROWS_PER_LEARNER:
        parser.error(f"--push-rows must be a multiple of {PUSH_ROWS_PER_LEARNER}")

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    out = asyncio.run(run(args, say))
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text)
    if not render(out):
        raise SystemExit("a check failed or a target was missed")


if __name__ == "__main__":
    main()
