"""One edge node as its own process, driven over stdin/stdout with JSON lines, so a test can
kill it (SIGKILL) in the middle of a sync and start it again on the same data directory.

    python -m tests.sync.edge_worker DATA_DIR SKEW_SECONDS

Every command is answered with one line: ``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from edge_node.node import NodeFiles, client_for, open_node
from lms_domain.access import Actor
from lms_domain.assessments.models import Attempt
from lms_domain.clock import SystemClock
from lms_domain.courses.models import Enrollment
from lms_domain.errors import DomainError
from lms_domain.learning import service as learning
from lms_domain.learning.schemas import AttemptStart, ProgressUpdate
from lms_domain.tenancy.models import Learner, Role
from sync.checksums import scope_checksums
from sync.protocol import SyncScope
from sync.runner import NodeDatabase, sync_once


class SkewedClock(SystemClock):
    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def now(self) -> datetime:
        return super().now() + self.skew


async def enrolled(db: NodeDatabase, actor: Actor, learner: uuid.UUID, course: uuid.UUID) -> None:
    async with db.write() as session, session.begin():
        found = await session.scalar(
            sa.select(Enrollment.id).where(Enrollment.learner_id == learner, Enrollment.course_id == course)
        )
        if found is None:
            await learning.enroll(session=session, actor=actor, course_id=course, learner_id=learner, clock=db.clock)


async def act(db: NodeDatabase, actor: Actor, command: dict[str, Any]) -> dict[str, Any]:
    """One learning action through the same domain flows the REST API uses."""
    op = command["op"]
    learner = uuid.UUID(command["learner"])
    if op == "rename":
        async with db.write() as session, session.begin():
            row = await session.get(Learner, learner)
            if row is None or row.deleted_at is not None:
                return {"ok": False, "error": "gone"}
            row.display_name = command["name"]
        return {"ok": True}
    if op == "delete":
        async with db.write() as session, session.begin():
            row = await session.get(Learner, learner)
            if row is None or row.deleted_at is not None:
                return {"ok": False, "error": "gone"}
            row.deleted_at = db.clock.now()
        return {"ok": True}
    course = uuid.UUID(command["course"])
    await enrolled(db, actor, learner, course)
    if op == "progress":
        async with db.write() as session, session.begin():
            await learning.record_progress(
                session=session,
                actor=actor,
                lesson_id=uuid.UUID(command["lesson"]),
                data=ProgressUpdate(learner_id=learner, percent=command["pct"]),
                clock=db.clock,
            )
        return {"ok": True}
    if op == "attempt":
        async with db.write() as session, session.begin():
            started = await learning.start_attempt(
                session=session,
                actor=actor,
                quiz_id=uuid.UUID(command["quiz"]),
                data=AttemptStart(learner_id=learner),
                clock=db.clock,
                verify_base_url="http://edge",
            )
        async with db.write() as session, session.begin():
            await learning.submit_attempt(
                session=session,
                actor=actor,
                attempt_id=started.id,
                answers={uuid.UUID(q): uuid.UUID(c) for q, c in command["answers"].items()},
                clock=db.clock,
                verify_base_url="http://edge",
            )
        return {"ok": True, "attempt": started.id.hex}
    return {"ok": False, "error": f"unknown op {op}"}


async def main(data_dir: Path, skew_s: float) -> None:
    files = NodeFiles(data_dir)
    clock = SkewedClock(timedelta(seconds=skew_s))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with open_node(files, clock=clock) as node, aiohttp.ClientSession() as http:
        client = client_for(node, http, timeout_s=30)
        actor = Actor(user_id=None, role=Role.INSTITUTION_ADMIN, institution_id=node.identity.institution_id)
        print(json.dumps({"ok": True, "ready": True}), flush=True)
        while line := await reader.readline():
            command = json.loads(line)
            try:
                if command["op"] == "sync":
                    answer: dict[str, Any] = {"ok": True, "report": (await sync_once(node.db, client)).summary()}
                elif command["op"] == "checksums":
                    scope = SyncScope(node.identity.institution_id, node.identity.node_id)
                    async with node.db.read() as session:
                        answer = {"ok": True, "checksums": await scope_checksums(session, scope)}
                elif command["op"] == "attempts":
                    async with node.db.read() as session:
                        ids = await session.scalars(sa.select(Attempt.id))
                        answer = {"ok": True, "attempts": sorted(i.hex for i in ids)}
                elif command["op"] == "quit":
                    print(json.dumps({"ok": True}), flush=True)
                    return
                else:
                    answer = await act(node.db, actor, command)
            except DomainError as exc:
                answer = {"ok": False, "error": f"{exc.code}: {exc.detail}"}
            except Exception as exc:  # the test decides; the worker keeps going
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2])))
