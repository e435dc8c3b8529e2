"""Cost of change capture: synced writes with the outbox hook against the same ORM writes
without it (the baseline, measured in the same run on the same database).

Each learner write is its own transaction, as a request or USSD hop would commit it, and
then the same again with 100 rows per transaction (a seeding or sync-apply batch). The
target from shared/reference/sync-lessons.md is writes at most 2.5x a plain table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from dataclasses import dataclass

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.databases import drop_database, fresh_database
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.changefeed.capture import _before_flush
from lms_domain.clock import SystemClock
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.ids import new_id
from lms_domain.tenancy.models import Institution, Learner
from lms_domain.tenancy.service import account_no_for
from server.migrate import upgrade


@dataclass
class Result:
    backend: str
    mode: str
    batch: int
    rows: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


async def _write(url: str, *, rows: int, batch: int, capture: bool) -> float:
    if capture:
        install_change_capture()
    elif event.contains(Session, "before_flush", _before_flush):
        event.remove(Session, "before_flush", _before_flush)
    engine = create_engine(url)
    makers = make_sessionmaker(engine, SyncContext(node_id=uuid.uuid4(), role=NodeRole.CENTRAL, clock=SystemClock()))
    institution_id = new_id()
    async with makers() as session, session.begin():
        session.add(Institution(id=institution_id, name="Bench", code=f"B{institution_id.hex[:10]}"))
    started = time.perf_counter()
    for _ in range(rows // batch):
        async with makers() as session, session.begin():
            for _ in range(batch):
                learner_id = new_id()
                session.add(
                    Learner(
                        id=learner_id,
                        institution_id=institution_id,
                        display_name="Bench Learner",
                        account_no=account_no_for(learner_id),
                    )
                )
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is reported")
    args = parser.parse_args()
    console = Console()
    results: list[Result] = []
    cases = [(b, batch, capture) for b in ("sqlite", "postgres") for batch in (1, 100) for capture in (False, True)]
    with tempfile.TemporaryDirectory() as workdir, Progress(console=console) as progress:
        task = progress.add_task("change capture", total=len(cases) * args.repeat)
        for backend, batch, capture in cases:
            best = float("inf")
            for _ in range(args.repeat):
                url = asyncio.run(fresh_database(backend, args.postgres, workdir))
                upgrade(url)
                best = min(best, asyncio.run(_write(url, rows=args.rows, batch=batch, capture=capture)))
                asyncio.run(drop_database(url, args.postgres))
                progress.advance(task)
            results.append(Result(backend, "outbox" if capture else "baseline", batch, args.rows, best))

    table = Table(
        title=f"Synced writes, {args.rows} learner rows, best of {args.repeat} "
        f"({platform.python_version()}, {os.cpu_count()} cores)"
    )
    for column in ("backend", "rows/txn", "baseline rows/s", "with outbox rows/s", "cost"):
        table.add_column(column, justify="right")
    for backend in ("sqlite", "postgres"):
        for batch in (1, 100):
            base = next(r for r in results if (r.backend, r.batch, r.mode) == (backend, batch, "baseline"))
            cap = next(r for r in results if (r.backend, r.batch, r.mode) == (backend, batch, "outbox"))
            table.add_row(
                backend, str(batch), f"{base.rate:,.0f}", f"{cap.rate:,.0f}", f"{cap.seconds / base.seconds:.2f}x"
            )
    console.print(table)
