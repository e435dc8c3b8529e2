"""Convergence: whatever the nodes do offline, in whatever order they sync, however often a
sync is killed half-way, after a final full sync every node holds exactly the central
server's rows for its scope, and no quiz attempt made anywhere is lost.

The central server runs on Postgres with its own concurrent writers; three edges of one
school are separate processes on separate SQLite files (killed with SIGKILL mid-sync and
restarted on the same files), one with its clock a day fast and one a day slow; a phone app
syncs one learner. Everything talks real HTTP on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import sqlalchemy.exc
from aiohttp import web
from aiohttp.test_utils import unused_port
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from edge_node.node import NodeFiles, init_node
from lms_domain.access import Actor
from lms_domain.assessments.models import Attempt
from lms_domain.changefeed import NodeRole, SyncContext
from lms_domain.changefeed.models import SyncState
from lms_domain.clock import SystemClock
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.errors import DomainError
from lms_domain.tenancy.models import Role
from server.app import create_app
from server.keys import sessionmaker_key
from server.migrate import upgrade
from server.settings import DatabaseSettings, Settings
from sync import state
from sync.checksums import scope_checksums
from sync.client import SyncClient
from sync.http import device_node_id
from sync.protocol import SyncScope
from sync.runner import NodeDatabase, sync_once
from tests.factories import FAST_HASHER, CourseFixture, make_course
from tests.sync.conftest import School, _school
from tests.sync.edge_worker import act

pytestmark = pytest.mark.backend_only("postgres")  # the set-up: a Postgres central server

EXAMPLES = 25 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 4
EDGES = ("e0", "e1", "e2")
SKEWS = {"e0": 0.0, "e1": 86_400.0, "e2": -86_400.0}
NAMES = ("Achieng", "Baraka", "Chebet", "Duma")

learner_ix = st.integers(0, 2)
action = st.one_of(
    st.tuples(st.just("rename"), learner_ix, st.sampled_from(NAMES)),
    st.tuples(st.just("progress"), learner_ix, st.integers(0, 1), st.integers(0, 100)),
    st.tuples(st.just("attempt"), learner_ix, st.booleans()),
    st.tuples(st.just("delete"), st.integers(1, 2)),
)
step = st.one_of(
    st.tuples(st.just("act"), st.sampled_from((*EDGES, "phone", "central")), action),
    st.tuples(st.just("sync"), st.sampled_from((*EDGES, "phone")), st.booleans(), st.floats(0.0, 0.25)),
)


@dataclass
class Worker:
    name: str
    files: NodeFiles
    skew: float
    process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.sync.edge_worker",
            str(self.files.data_dir),
            str(self.skew),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "SOMO_LOG_JSON": "false", "SOMO_LOG_LEVEL": "ERROR"},
        )
        assert (await self._read())["ready"]

    async def _read(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), 120)
        assert line, f"{self.name} died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await self.process.stdin.drain()

    async def call(self, command: dict[str, Any]) -> dict[str, Any]:
        await self.send(command)
        return await self._read()

    async def sync_killed_after(self, delay: float) -> None:
        """Start a sync and SIGKILL the process ``delay`` seconds in, then start it again."""
        await self.send({"op": "sync"})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._read(), delay)
        await self.kill()
        await self.start()

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.call({"op": "quit"})
            await self.process.wait()


@dataclass
class World:
    url: str
    makers: Any
    school: School
    catalogue: CourseFixture
    workers: dict[str, Worker]
    phone: NodeDatabase
    phone_client: SyncClient
    attempts: set[str] = field(default_factory=set)
    central_tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def course(self, which: int) -> CourseFixture:
        return self.school.course if which == 0 else self.catalogue

    def command(self, action: tuple[Any, ...], learner: int | None = None) -> dict[str, Any]:
        op = action[0]
        who = self.school.learners[learner if learner is not None else action[1]].id.hex
        if op == "rename":
            return {"op": op, "learner": who, "name": action[2]}
        if op == "delete":
            return {"op": op, "learner": who}
        course = self.course(0)
        if op == "progress":
            lesson = course.lessons[action[2]].id.hex
            return {"op": op, "learner": who, "course": course.course.id.hex, "lesson": lesson, "pct": action[3]}
        answers = {q.hex: (course.correct if action[2] else course.wrong)[q].hex for q in course.correct}
        return {
            "op": op,
            "learner": who,
            "course": course.course.id.hex,
            "quiz": course.quiz.id.hex,
            "answers": answers,
        }


async def _phone(tmp: Path, template: Path, url: str, school: School, token: str, http: aiohttp.ClientSession) -> Any:
    """A phone app: its own SQLite file, synced with the learner's REST token."""
    path = tmp / "phone.db"
    shutil.copyfile(template, path)
    db_url = f"sqlite+aiosqlite:///{path}"
    learner = school.learners[0].id
    identity = state.Identity(device_node_id(learner), school.institution.id, url)
    lock = asyncio.Lock()
    engine = create_engine(db_url, writer_lock=lock)
    apply_engine = create_engine(db_url, writer_lock=lock, foreign_keys=False)
    async with engine.begin() as conn:
        await conn.execute(sa.insert(SyncState).values(key=state.IDENTITY, value=identity.dump()))
    clock = SystemClock()
    context = SyncContext(node_id=identity.node_id, role=NodeRole.EDGE, clock=clock)
    db = NodeDatabase(
        write=make_sessionmaker(engine, context),
        read=make_sessionmaker(engine, context, read_only=True),
        apply=make_sessionmaker(apply_engine, context),
        apply_read=make_sessionmaker(apply_engine, context, read_only=True),
        context=context,
        clock=clock,
    )
    return db, SyncClient(http, url, bearer=token), (engine, apply_engine)


async def safe_act(db: NodeDatabase, actor: Actor, command: dict[str, Any]) -> dict[str, Any]:
    """As the worker does: a refused action (a deleted learner, say) is an answer, not a failure."""
    try:
        return await act(db, actor, command)
    except DomainError as exc:
        return {"ok": False, "error": exc.code}
    except sa.exc.IntegrityError:
        # The same enrollment created by a push at the same instant: the REST API answers
        # 409 "retry" here; the row exists either way.
        return {"ok": False, "error": "conflict"}


async def _run(world: World, program: list[tuple[Any, ...]]) -> None:
    phone_actor = Actor(
        user_id=None,
        role=Role.LEARNER,
        institution_id=world.school.institution.id,
        learner_id=world.school.learners[0].id,
    )
    office = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=world.school.institution.id)
    for item in program:
        if item[0] == "act":
            _, who, action = item
            if who == "phone":
                command = world.command(action, learner=0)  # the phone only ever acts for its learner
                if command["op"] == "delete":
                    continue
                answer = await safe_act(world.phone, phone_actor, command)
            elif who == "central":
                central_db = NodeDatabase(world.makers, world.makers, world.makers, world.makers, None, SystemClock())  # type: ignore[arg-type]
                # A concurrent writer: it runs while the next syncs do.
                world.central_tasks.append(asyncio.create_task(safe_act(central_db, office, world.command(action))))
                continue
            else:
                answer = await world.workers[who].call(world.command(action))
            if answer.get("attempt"):
                world.attempts.add(answer["attempt"])
        else:
            _, who, kill, delay = item
            if who == "phone":
                with contextlib.suppress(TimeoutError):  # the app was closed mid-sync
                    await asyncio.wait_for(sync_once(world.phone, world.phone_client), delay if kill else 60)
            elif kill:
                await world.workers[who].sync_killed_after(delay)
            else:
                answer = await world.workers[who].call({"op": "sync"})
                assert answer["ok"], answer
    for task in world.central_tasks:
        answer = await task
        if answer.get("attempt"):
            world.attempts.add(answer["attempt"])


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    # No shrinking: each example starts processes, so shrinking would take many minutes; the
    # failing program is printed as generated.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(program=st.lists(step, min_size=6, max_size=24))
# Always tried as well: a delete, the same learner renamed on two nodes and the office at once,
# progress from three places, attempts everywhere, and kills in the middle of syncs.
@example(
    program=[
        ("act", "e0", ("delete", 2)),
        ("act", "e1", ("rename", 1, "Baraka")),
        ("act", "e2", ("rename", 1, "Chebet")),
        ("act", "central", ("rename", 1, "Duma")),
        ("act", "e0", ("progress", 0, 0, 40)),
        ("act", "phone", ("progress", 0, 0, 70)),
        ("act", "central", ("progress", 0, 1, 100)),
        ("act", "e1", ("attempt", 1, True)),
        ("act", "phone", ("attempt", 0, False)),
        ("sync", "e1", True, 0.05),
        ("sync", "e0", False, 0.0),
        ("sync", "phone", True, 0.02),
        ("act", "e2", ("attempt", 0, True)),
        ("sync", "e2", True, 0.15),
        ("act", "e2", ("rename", 2, "Achieng")),
    ]
)
def test_every_node_converges_and_no_attempt_is_lost(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, program: list[tuple[Any, ...]]
) -> None:
    note(f"program = {program!r}")  # printed when the example fails (fixtures hide the arguments)
    asyncio.run(_example(database_url, tmp_path_factory.mktemp("converge"), program))


async def _example(database_url: str, tmp: Path, program: list[tuple[Any, ...]]) -> None:
    template = tmp / "template.db"
    await asyncio.to_thread(upgrade, f"sqlite+aiosqlite:///{template}")
    app = create_app(Settings(database=DatabaseSettings(url=database_url)), hasher=FAST_HASHER)
    runner = web.AppRunner(app)
    await runner.setup()
    port = unused_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    workers: dict[str, Worker] = {}
    engines: tuple[Any, ...] = ()
    try:
        makers = app[sessionmaker_key]
        async with makers() as session, session.begin():
            school = await _school(session, f"S{uuid.uuid4().hex[:5]}", f"07{uuid.uuid4().int % 10**7:07d}")
            catalogue = await make_course(session, institution=None, title="Shared")
        async with aiohttp.ClientSession() as http:
            admin = await _login(http, url, school.admin_login)
            for name in EDGES:
                async with http.post(
                    url + "/api/v1/edge-nodes", json={"name": name}, headers={"Authorization": f"Bearer {admin}"}
                ) as response:
                    code = (await response.json())["enrollment_code"]
                files = NodeFiles(tmp / name)
                files.data_dir.mkdir()
                shutil.copyfile(template, files.database)
                await init_node(files, central_url=url, code=code)
                workers[name] = Worker(name, files, SKEWS[name])
            await asyncio.gather(*(w.start() for w in workers.values()))
            token = await _login(http, url, school.learner_login)
            phone, phone_client, engines = await _phone(tmp, template, url, school, token, http)
            world = World(url, makers, school, catalogue, workers, phone, phone_client)
            # The first copy: `somo edge sync` after `somo edge init`, and the app's at sign-in.
            for worker in workers.values():
                assert (await worker.call({"op": "sync"}))["ok"]
            await sync_once(phone, phone_client)

            await _run(world, program)
            for _ in range(2):  # everyone pushes, then everyone has everything
                for name in EDGES:
                    answer = await workers[name].call({"op": "sync"})
                    assert answer["ok"], answer
                await sync_once(phone, phone_client)

            await _check(world)
    finally:
        for worker in workers.values():
            await worker.kill()
        for engine in engines:
            await engine.dispose()
        await runner.cleanup()


async def _check(world: World) -> None:
    scope = SyncScope(world.school.institution.id, uuid.uuid4())
    async with world.makers() as session:
        central = await scope_checksums(session, scope)
        central_attempts = {i.hex for i in await session.scalars(sa.select(Attempt.id))}
        learner_scope = SyncScope(scope.institution_id, uuid.uuid4(), world.school.learners[0].id)
        central_phone = await scope_checksums(session, learner_scope)
    assert world.attempts <= central_attempts, "an attempt made somewhere never reached the central server"
    for name, worker in world.workers.items():
        answer = await worker.call({"op": "checksums"})
        differing = {t for t in central if central[t] != answer["checksums"][t]}
        assert not differing, f"{name} differs from the central server in {sorted(differing)}"
        held = set((await worker.call({"op": "attempts"}))["attempts"])
        assert world.attempts <= held, f"{name} is missing attempts"
    async with world.phone.read() as session:
        phone = await scope_checksums(session, learner_scope)
    differing = {t for t in central_phone if central_phone[t] != phone[t]}
    assert not differing, f"the phone differs from the central server in {sorted(differing)}"


async def _login(http: aiohttp.ClientSession, url: str, login: str) -> str:
    from tests.sync.conftest import PASSWORD

    async with http.post(url + "/api/v1/auth/token", json={"login": login, "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["access_token"])
