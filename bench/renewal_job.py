"""The renewal job over N due subscriptions on PostgreSQL: must take at most 60 s for 100,000,
with memory flat in N (issue 6).

    python -m bench.renewal_job [--counts 10000,50000,100000] [--batch 1000] [--no-heap]

One fresh PostgreSQL database (``somo_bench_renewals_<pid>``, dropped at the end), migrated to
head and seeded with bulk Core inserts (not timed): one institution, a subscription product
with its monthly price (KES 300), and for each count, enough learners (each with their own
phone) and ACTIVE monthly subscriptions due within the next three days to make N in all. The
clock is fixed at 10:00 Nairobi, outside quiet hours.

For each count, in the same run on the same rows:

* *Somo*: ``lms_domain.subscriptions.invitations.invite_renewals`` as the scheduler calls it
  (keyset pages of ``--batch``, a transaction per page), then a second pass, which must
  invite nobody;
* *baseline*: the naive job written below (``naive_invite``): every due subscription loaded
  at once as ORM objects with its learner, phone and price, one attempt and one notification
  ``session.add``-ed per row, one transaction.

Each run is in a fresh process (so one run's heap never pads the next) and, after it,
exactly N step-0 attempts and N queued "renewal_due" SMS must exist (one per subscription,
one per learner); the two tables are then emptied (TRUNCATE) for the next run. Memory is the
growth of the process's peak RSS over the run (``VmHWM`` reset through
``/proc/self/clear_refs``) and, in a separate run because tracemalloc slows Python down,
the peak Python heap (``tracemalloc``). CPU is counted for the job's process, for its one
PostgreSQL backend, and for the whole machine, so a run slowed by other work shows it
(*others cores*: busy cores minus the job and its backend). A baseline count whose time,
extrapolated linearly from the previous count, would exceed ``--baseline-limit`` seconds is
skipped and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
import tracemalloc
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import lms_domain.models  # noqa: F401 - every table mapped, as in the server, so foreign keys resolve
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import FixedClock, to_nairobi
from lms_domain.commerce.models import Price, PriceInterval, Product, ProductKind
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.i18n import Language
from lms_domain.ids import luhn_check_digit, natural_id, new_id
from lms_domain.money import Money
from lms_domain.notifications.models import NotificationChannel, NotificationLog, NotificationStatus
from lms_domain.notifications.service import quiet_hours_for, render, rendered_text
from lms_domain.phones import Network
from lms_domain.subscriptions.invitations import EVENT, invite_renewals
from lms_domain.subscriptions.models import (
    RenewalOutcome,
    Subscription,
    SubscriptionRenewalAttempt,
    SubscriptionStatus,
)
from lms_domain.tenancy.models import Institution, Learner, Phone
from server.migrate import upgrade

NOW = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)  # 10:00 in Nairobi: no quiet hours in the way
NOTICE = timedelta(days=3)
BUDGET_S = 60.0
PRICE_MINOR = 30_000  # KES 300 a month
INSERT_BATCH = 5_000
TABLES = (SubscriptionRenewalAttempt.__tablename__, NotificationLog.__tablename__)


@dataclass
class Catalogue:
    institution_id: uuid.UUID
    product_id: uuid.UUID
    price_id: uuid.UUID


@dataclass
class Result:
    count: int
    impl: str
    seconds: float | None = None
    peak_rss_mib: float | None = None
    heap_peak_mib: float | None = None
    rerun_seconds: float | None = None
    rerun_invited: int | None = None
    batches: int | None = None
    job_cpu_s: float | None = None
    pg_cpu_s: float | None = None
    others_cores: float | None = None
    connections: int | None = None
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None

    @property
    def rate(self) -> float | None:
        return self.count / self.seconds if self.seconds else None


# Seeding ------------------------------------------------------------------------------------


async def seed_catalogue(engine: AsyncEngine) -> Catalogue:
    """The school and what its learners subscribe to."""
    now = datetime.now(UTC)
    cat = Catalogue(institution_id=new_id(), product_id=new_id(), price_id=new_id())
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(Institution),
            [{"id": cat.institution_id, "name": "Bench School", "code": "BENCHREN", "created_at": now}],
        )
        await conn.execute(
            sa.insert(Product),
            [
                {
                    "id": cat.product_id,
                    "institution_id": cat.institution_id,
                    "sku": "SOMO-PREMIUM",
                    "kind": ProductKind.SUBSCRIPTION,
                    "name_en": "Somo Premium",
                    "name_sw": "Somo Premium",
                }
            ],
        )
        await conn.execute(
            sa.insert(Price),
            [
                {
                    "id": cat.price_id,
                    "institution_id": cat.institution_id,
                    "product_id": cat.product_id,
                    "currency": "KES",
                    "amount_minor": PRICE_MINOR,
                    "interval": PriceInterval.MONTH,
                }
            ],
        )
    return cat


def _rows(cat: Catalogue, start: int, stop: int, total: int) -> tuple[list[dict[str, Any]], ...]:
    """Phones, learners and subscriptions number ``start``..``stop - 1`` (of ``total``)."""
    now = datetime.now(UTC)
    # Due dates spread evenly over the notice window, an hour clear of each end.
    spread = (NOTICE - timedelta(hours=2)) / max(total, 1)
    phones, learners, subscriptions = [], [], []
    for n in range(start, stop):
        e164 = f"+2547{n:08d}"
        phone_id, learner_id = natural_id("phone", e164), new_id()
        body = f"{n:09d}"
        end = NOW + timedelta(hours=1) + spread * n
        phones.append({"id": phone_id, "e164": e164, "network": Network.SAFARICOM, "created_at": now})
        learners.append(
            {
                "id": learner_id,
                "institution_id": cat.institution_id,
                "display_name": f"Learner {n}",
                "language": Language.SW if n % 3 == 0 else Language.EN,
                "phone_id": phone_id,
                "account_no": body + luhn_check_digit(body),
                "created_at": now,
            }
        )
        subscriptions.append(
            {
                "id": new_id(),
                "institution_id": cat.institution_id,
                "learner_id": learner_id,
                "product_id": cat.product_id,
                "price_id": cat.price_id,
                "status": SubscriptionStatus.ACTIVE,
                "current_period_start": end - timedelta(days=30),
                "current_period_end": end,
                "created_at": now,
            }
        )
    return phones, learners, subscriptions


async def seed_due(engine: AsyncEngine, cat: Catalogue, start: int, stop: int, total: int, console: Console) -> None:
    """Learners ``start``..``stop - 1``, each with a phone and a subscription due within the notice."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"seeding learners {start:,}-{stop - 1:,}", total=stop - start)
        for lo in range(start, stop, INSERT_BATCH):
            hi = min(lo + INSERT_BATCH, stop)
            phones, learners, subscriptions = _rows(cat, lo, hi, total)
            async with engine.begin() as conn:
                for model, rows in ((Phone, phones), (Learner, learners), (Subscription, subscriptions)):
                    await conn.execute(sa.insert(model), rows)
            progress.advance(task, hi - lo)
    # Committed: an ANALYZE in a transaction that rolls back leaves the planner no statistics.
    async with engine.begin() as conn:
        await conn.execute(sa.text("ANALYZE"))


# The two jobs -------------------------------------------------------------------------------


async def naive_invite(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """The baseline: what the job looks like written the obvious way. Every due subscription as
    ORM objects at once, an attempt and a notification added per row, one transaction."""
    async with sessions() as session, session.begin():
        rows = (
            await session.execute(
                sa.select(Subscription, Learner, Phone, Price)
                .join(Learner, Learner.id == Subscription.learner_id)
                .join(Phone, Phone.id == Learner.phone_id)
                .join(Price, Price.id == Subscription.price_id)
                .where(
                    Subscription.status == SubscriptionStatus.ACTIVE,
                    Subscription.deleted_at.is_(None),
                    Subscription.cancel_at_period_end.is_(False),
                    Subscription.current_period_end > now,
                    Subscription.current_period_end <= now + NOTICE,
                    Price.amount_minor > 0,
                    ~sa.exists().where(
                        SubscriptionRenewalAttempt.subscription_id == Subscription.id,
                        SubscriptionRenewalAttempt.period_start == Subscription.current_period_end,
                    ),
                )
            )
        ).all()
        quiet = await quiet_hours_for(session, rows[0][0].institution_id) if rows else None
        texts = {}
        for sub, learner, phone, price in rows:
            if learner.language not in texts:
                texts[learner.language] = await rendered_text(
                    session,
                    institution_id=sub.institution_id,
                    event=EVENT,
                    channel=NotificationChannel.SMS,
                    language=learner.language,
                    values={},
                )
            text = texts[learner.language]
            session.add(
                SubscriptionRenewalAttempt(
                    institution_id=sub.institution_id,
                    subscription_id=sub.id,
                    period_start=sub.current_period_end,
                    attempt_no=0,
                    dunning_step=0,
                    outcome=RenewalOutcome.INVITED,
                    scheduled_for=sub.current_period_end,
                    invited_at=now,
                )
            )
            values = {
                "learner_name": learner.display_name,
                "amount": Money(price.amount_minor, price.currency).figure,
                "due_date": to_nairobi(sub.current_period_end).strftime("%d/%m/%Y"),
            }  # {ussd_code} and {shortcode} are the sender's to fill, as in Somo
            session.add(
                NotificationLog(
                    institution_id=sub.institution_id,
                    learner_id=learner.id,
                    template_id=text.template_id,
                    event=EVENT,
                    channel=NotificationChannel.SMS,
                    language=text.language,
                    recipient=phone.e164,
                    body=render(text.body, values),
                    status=NotificationStatus.QUEUED,
                    dedupe_key=f"{EVENT}:{sub.id}:{sub.current_period_end.isoformat()}",
                    scheduled_for=quiet.next_allowed(now) if quiet else None,
                )
            )
    return len(rows)


# One measured run, in a process of its own ---------------------------------------------------


def _status_kib(name: str) -> int:
    match = re.search(rf"^{name}:\s*(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def _cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU of a process (any user's: /proc/<pid>/stat is world-readable)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy and in all, so far."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(ticks[:8])  # guest time is already counted in user
    return (total - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def _reset_peak_rss() -> None:
    # "5" resets VmHWM to the current RSS (Linux >= 4.0); without it the process is fresh anyway.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


async def _measure(url: str, impl: str, heap: bool, batch: int) -> dict[str, Any]:
    engine = create_engine(url)
    install_change_capture()
    clock = FixedClock(NOW)
    sessions = make_sessionmaker(engine, SyncContext(node_id=uuid.uuid4(), role=NodeRole.CENTRAL, clock=clock))
    try:
        # The pool's first connection is not the job's cost. The job's sessions run one after
        # another, so they all reuse it: its backend's CPU is the database's share of the run.
        async with engine.connect() as conn:
            backend_pid = int(await conn.scalar(sa.text("SELECT pg_backend_pid()")))
        gc.collect()
        if heap:
            tracemalloc.start()
        _reset_peak_rss()
        rss_before = _status_kib("VmRSS")
        cpu_before, pg_before, (busy_before, all_before) = _cpu_seconds(), _cpu_seconds(backend_pid), _machine_busy()
        started = time.perf_counter()
        if impl == "somo":
            run = await invite_renewals(sessions=sessions, clock=clock, notice=NOTICE, batch=batch)
            done, batches = run.invited, run.batches
        else:
            done, batches = await naive_invite(sessions, clock.now()), 1
        elapsed = time.perf_counter() - started
        busy_after, all_after = _machine_busy()
        out: dict[str, Any] = {
            "seconds": elapsed,
            "done": done,
            "batches": batches,
            "peak_rss_mib": (_status_kib("VmHWM") - rss_before) / 1024,
            "job_cpu_s": _cpu_seconds() - cpu_before,
            "pg_cpu_s": _cpu_seconds(backend_pid) - pg_before,
            "connections": engine.sync_engine.pool.checkedin(),  # type: ignore[attr-defined]
            # Busy cores over the run, of os.cpu_count(): what else ran is this minus job and database.
            "machine_busy_cores": (busy_after - busy_before) / (all_after - all_before) * (os.cpu_count() or 1),
        }
        if heap:
            out["heap_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
        if impl == "somo" and not heap:
            started = time.perf_counter()
            again = await invite_renewals(sessions=sessions, clock=clock, notice=NOTICE, batch=batch)
            out["rerun_seconds"] = time.perf_counter() - started
            out["rerun_invited"] = again.invited + again.queued
        return out
    finally:
        await engine.dispose()


def measure(url: str, impl: str, heap: bool, batch: int) -> dict[str, Any]:
    """Entry point of the child process."""
    return asyncio.run(_measure(url, impl, heap, batch))


def in_child(url: str, impl: str, *, heap: bool, batch: int) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, url, impl, heap, batch).result()


# Checks and reset ---------------------------------------------------------------------------


async def check(dsn: str, count: int) -> list[str]:
    """Exactly one step-0 invitation per subscription and one queued SMS per learner."""
    conn = await asyncpg.connect(dsn)
    try:
        attempts, subscriptions, step0 = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT subscription_id), "
            "count(*) FILTER (WHERE dunning_step = 0 AND attempt_no = 0 AND outcome = 'invited') "
            "FROM subscription_renewal_attempts"
        )
        messages, learners, queued = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT learner_id), "
            "count(*) FILTER (WHERE event = $1 AND channel = 'sms' AND status = 'queued' "
            # Filled in, but for the deployment's contact points, which the sender fills.
            "AND replace(replace(body, '{ussd_code}', ''), '{shortcode}', '') NOT LIKE '%{%') "
            "FROM notification_log",
            EVENT,
        )
    finally:
        await conn.close()
    problems = []
    for name, got in (
        ("attempts", attempts),
        ("subscriptions invited", subscriptions),
        ("step-0 invited", step0),
        ("notifications", messages),
        ("learners messaged", learners),
        ("queued renewal_due SMS, filled in", queued),
    ):
        if got != count:
            problems.append(f"{name} {got:,}")
    return problems


async def truncate(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        await conn.execute(f"VACUUM ANALYZE {', '.join(TABLES)}")
    finally:
        await conn.close()


# Machine ------------------------------------------------------------------------------------


def machine(admin_dsn: str) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "nproc": os.cpu_count()}
    cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    info["cpu"] = cpu.group(1).strip() if cpu else platform.processor()
    mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
    info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    info["load_average"] = os.getloadavg()
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, check=True, text=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
        info["commit"] = commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")

    async def settings() -> dict[str, str]:
        conn = await asyncpg.connect(admin_dsn)
        try:
            names = ("server_version", "fsync", "synchronous_commit", "shared_buffers")
            return {name: await conn.fetchval(f"SHOW {name}") for name in names}
        finally:
            await conn.close()

    info["postgres"] = asyncio.run(settings())
    return info


# Running ------------------------------------------------------------------------------------


def _dsns(admin_dsn: str, name: str) -> tuple[str, str]:
    """The new database's SQLAlchemy URL and its plain libpq DSN."""
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1), dsn


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def run(args: argparse.Namespace, console: Console) -> list[Result]:
    name = f"somo_bench_renewals_{os.getpid()}"
    url, dsn = _dsns(args.postgres, name)
    asyncio.run(_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    asyncio.run(_admin(args.postgres, f'CREATE DATABASE "{name}"'))
    results: list[Result] = []
    try:
        upgrade(url, "head")

        async def prepare(start: int, stop: int, cat: Catalogue | None) -> Catalogue:
            engine = create_engine(url)
            try:
                cat = cat or await seed_catalogue(engine)
                began = time.perf_counter()
                await seed_due(engine, cat, start, stop, max(args.counts), console)
                console.print(
                    f"[dim]seeded {stop - start:,} learners, phones and subscriptions in "
                    f"{time.perf_counter() - began:.1f} s ({stop:,} due in all)[/]"
                )
                return cat
            finally:
                await engine.dispose()

        cat: Catalogue | None = None
        seeded = 0
        baseline_last: tuple[int, float] | None = None
        for count in sorted(args.counts):
            cat = asyncio.run(prepare(seeded, count, cat))
            seeded = count
            for impl in ("somo", "baseline"):
                result = Result(count=count, impl=impl)
                results.append(result)
                if impl == "baseline" and baseline_last is not None:
                    predicted = baseline_last[1] * count / baseline_last[0]
                    if predicted > args.baseline_limit:
                        result.skipped = f"predicted {predicted:.0f} s > {args.baseline_limit:.0f} s"
                        console.print(f"[yellow]baseline at {count:,} skipped: {result.skipped}[/]")
                        continue
                with console.status(f"{impl}: {count:,} due subscriptions"):
                    timed = in_child(url, impl, heap=False, batch=args.batch)
                result.seconds, result.peak_rss_mib = timed["seconds"], timed["peak_rss_mib"]
                result.batches, result.connections = timed["batches"], timed["connections"]
                result.job_cpu_s, result.pg_cpu_s = timed["job_cpu_s"], timed["pg_cpu_s"]
                result.others_cores = max(
                    0.0, timed["machine_busy_cores"] - (result.job_cpu_s + result.pg_cpu_s) / result.seconds
                )
                result.rerun_seconds, result.rerun_invited = timed.get("rerun_seconds"), timed.get("rerun_invited")
                result.problems = asyncio.run(check(dsn, count))
                if timed["done"] != count:
                    result.problems.append(f"reported {timed['done']:,} invited")
                if impl == "somo" and result.rerun_invited:
                    result.problems.append(f"second pass invited or queued {result.rerun_invited:,}")
                if impl == "baseline":
                    baseline_last = (count, result.seconds)
                asyncio.run(truncate(dsn))
                if args.heap:
                    with console.status(f"{impl}: {count:,} due subscriptions, under tracemalloc"):
                        traced = in_child(url, impl, heap=True, batch=args.batch)
                    result.heap_peak_mib = traced["heap_peak_mib"]
                    result.problems += [f"traced run: {p}" for p in asyncio.run(check(dsn, count))]
                    asyncio.run(truncate(dsn))
                console.print(
                    f"[dim]{impl} {count:,}: {result.seconds:.2f} s, {result.rate:,.0f}/s, "
                    f"peak RSS +{result.peak_rss_mib:.1f} MiB, CPU job {result.job_cpu_s:.1f} s, "
                    f"database {result.pg_cpu_s:.1f} s, others {result.others_cores:.2f} cores"
                    f" ({result.connections} connection(s))"
                    + (f", heap peak {result.heap_peak_mib:.1f} MiB" if result.heap_peak_mib is not None else "")
                    + (f", second pass {result.rerun_seconds:.2f} s" if result.rerun_seconds is not None else "")
                    + (f", [red]{'; '.join(result.problems)}[/]" if result.problems else ", checks ok")
                    + "[/]"
                )
    finally:
        asyncio.run(_admin(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return results


def render_table(results: list[Result], info: dict[str, Any], args: argparse.Namespace, console: Console) -> bool:
    pg = info["postgres"]
    table = Table(
        title=f"Renewal job on PostgreSQL {pg['server_version']}, batch {args.batch}, budget {BUDGET_S:.0f} s "
        f"at 100,000\n{info['cpu']}, {info['nproc']} cores, {info['memory_gib']} GiB, Python {info['python']}, "
        f"commit {info.get('commit', '?')}"
    )
    columns = ("due", "job", "seconds", "subs/s", "peak RSS +MiB", "heap peak MiB", "2nd pass s")
    for column in (*columns, "CPU s: job, db", "others cores", "checks"):
        table.add_column(column, justify="right")
    ok = True
    for r in results:
        if r.skipped:
            table.add_row(f"{r.count:,}", r.impl, "skipped", r.skipped, "", "", "", "", "", "")
            continue
        ok &= not r.problems
        if r.impl == "somo" and r.count >= 100_000:
            ok &= (r.seconds or 0) <= BUDGET_S
        table.add_row(
            f"{r.count:,}",
            "[bold]Somo[/]" if r.impl == "somo" else "baseline",
            f"{r.seconds:.2f}",
            f"{r.rate:,.0f}",
            f"{r.peak_rss_mib:.1f}",
            f"{r.heap_peak_mib:.1f}" if r.heap_peak_mib is not None else "-",
            f"{r.rerun_seconds:.2f}" if r.rerun_seconds is not None else "-",
            f"{r.job_cpu_s:.1f}, {r.pg_cpu_s:.1f}",
            f"{r.others_cores:.2f}",
            "ok" if not r.problems else f"[red]{'; '.join(r.problems)}[/]",
        )
    console.print(table)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=lambda s: [int(c) for c in s.split(",")], default=[10_000, 50_000, 100_000])
    parser.add_argument("--batch", type=int, default=1000, help="the job's page size (the scheduler's default)")
    parser.add_argument("--no-heap", dest="heap", action="store_false", help="skip the tracemalloc runs")
    parser.add_argument("--baseline-limit", type=float, default=300.0, help="seconds a baseline run may take")
    parser.add_argument("--json", type=Path, help="also write the machine and figures here")
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    console = Console(width=None if sys.stdout.isatty() else 120)
    info = machine(args.postgres)
    console.print(f"[dim]{json.dumps(info)}[/]")
    results = run(args, console)
    info["load_average_after"] = os.getloadavg()
    ok = render_table(results, info, args, console)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "results": [asdict(r) | {"rate": r.rate} for r in results]}, indent=2)
        )
    if not ok:
        raise SystemExit("the renewal job failed a check or exceeded the budget")


if __name__ == "__main__":
    main()
