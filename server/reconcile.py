"""``somo reconcile`` and the nightly reconciliation job: fetch the provider's statement, compare
it and the callback inbox with the ledger (``lms_domain.payments.reconciliation``), heal the one
safe class, report the rest. Every run is kept (``lms_domain.payments.exceptions.record_run``):
a healing run files what it left open in the console's exceptions queue and closes what it
healed; a dry run is kept as a report only.

The statement comes from ``--statement`` (a CSV file or an http(s) URL, repeatable) or, when
none is given and the Daraja simulator is configured, from ``{simulator_url}/sim/statement``. An
explicitly named statement that cannot be read is an error; the default one being unreachable
is only a warning, and the run then skips "missing at provider" (the inbox alone would report
every payment confirmed by STK Query).

Exit status of the command: 0 when no discrepancy is left open (none found, or all healed), 1
(``EXIT_DISCREPANCIES``) when some remain for a person, 2 when a named statement is unreadable;
the usual 3-5 for configuration, database and domain errors (``server.cli``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from yarl import URL

from lms_domain.clock import Clock, SystemClock
from lms_domain.errors import DomainError
from lms_domain.money import Money
from lms_domain.payments.exceptions import record_run
from lms_domain.payments.reconciliation import (
    DiscrepancyClass,
    ProviderRecord,
    ReconciliationReport,
    nairobi_day,
    reconcile_day,
)
from lms_domain.payments.statement import BadLine, parse_statement
from server.keys import clock_key, sessionmaker_key
from server.settings import Settings

log = logging.getLogger("somo.reconcile")

EXIT_DISCREPANCIES = 1
STATEMENT_TIMEOUT = aiohttp.ClientTimeout(total=60, connect=5)
SHOWN_DISCREPANCIES = 25  # rows of the human summary; --json has them all
SHOWN_BAD_LINES = 5


class StatementUnavailable(Exception):
    """A statement named by the operator could not be read or fetched."""


@dataclass(slots=True)
class StatementSource:
    """One statement read for a run: where from, what it yielded, or why it did not."""

    location: str
    records: int = 0
    skipped: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "location": self.location,
            "records": self.records,
            "skipped": self.skipped,
            "error": self.error,
            "bad_lines": [{"line": b.line, "reason": b.reason, "raw": b.raw} for b in self.bad_lines],
        }


@dataclass(slots=True)
class ReconciliationRun:
    """A reconciliation and what fed it."""

    report: ReconciliationReport
    statements: list[StatementSource]
    warnings: list[str]
    elapsed_s: float
    run_id: uuid.UUID | None = None  # the stored report (``lms_domain.payments.exceptions``)

    def inputs(self) -> dict[str, Any]:
        """What fed the run, kept with its stored report."""
        return {
            "statements": [s.to_dict() for s in self.statements],
            "warnings": self.warnings,
            "elapsed_s": round(self.elapsed_s, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), **self.inputs(), "run_id": str(self.run_id) if self.run_id else None}


def previous_day(clock: Clock) -> date:
    """Yesterday on the Nairobi calendar: what the nightly job reconciles."""
    return nairobi_day(clock.now()) - timedelta(days=1)


def simulator_statement_url(settings: Settings, day: date) -> str:
    return str(URL(settings.payments.simulator_url).join(URL("/sim/statement")).with_query(date=day.isoformat()))


async def read_statement(location: str, http: aiohttp.ClientSession) -> bytes:
    """The raw bytes of a statement file or http(s) URL; ``StatementUnavailable`` otherwise."""
    if location.startswith(("http://", "https://")):
        try:
            async with http.get(location) as response:
                if response.status != 200:
                    raise StatementUnavailable(f"{location} answered HTTP {response.status}")
                return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StatementUnavailable(f"cannot fetch {location}: {exc or type(exc).__name__}") from None
    try:
        return await asyncio.to_thread(Path(location).read_bytes)
    except OSError as exc:
        raise StatementUnavailable(f"cannot read {location}: {exc.strerror or exc}") from None


async def _statement_records(
    locations: Sequence[str], *, explicit: bool, http: aiohttp.ClientSession | None
) -> tuple[list[ProviderRecord], list[StatementSource], list[str]]:
    records: list[ProviderRecord] = []
    sources: list[StatementSource] = []
    warnings: list[str] = []
    async with AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=STATEMENT_TIMEOUT))
        for location in locations:
            source = StatementSource(location)
            sources.append(source)
            try:
                data = await read_statement(location, http)
            except StatementUnavailable as exc:
                if explicit:
                    raise
                source.error = str(exc)
                warnings.append(f"statement unavailable ({exc}); missing-at-provider is not checked")
                continue
            # Parsing 100,000 lines takes about a second: off the event loop, so a server
            # running this as a job keeps answering.
            statement = await asyncio.to_thread(parse_statement, data)
            records += statement.records
            source.records, source.skipped, source.bad_lines = (
                len(statement.records),
                statement.skipped,
                statement.bad_lines,
            )
            if statement.bad_lines:
                warnings.append(f"{location}: {len(statement.bad_lines)} line(s) could not be used")
    return records, sources, warnings


async def run_reconciliation(
    target: web.Application | async_sessionmaker[AsyncSession],
    settings: Settings,
    day: date,
    *,
    statements: Sequence[str] = (),
    heal: bool = True,
    clock: Clock | None = None,
    http: aiohttp.ClientSession | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> ReconciliationRun:
    """Reconcile ``day`` (Nairobi) for the scheduler or the CLI; ``target`` is the app or a sessionmaker.

    ``statements`` are file paths or URLs; without any, the simulator's statement is fetched
    when one is configured (outside production). Raises ``StatementUnavailable`` only for a
    statement named here.
    """
    started = time.perf_counter()
    if isinstance(target, web.Application):
        sessions = target[sessionmaker_key]
        clock = clock or target[clock_key]
    else:
        sessions = target
    clock = clock or SystemClock()
    started_at = clock.now()
    locations = list(statements)
    explicit = bool(locations)
    if not locations and settings.environment != "production" and settings.payments.simulator_url:
        locations = [simulator_statement_url(settings, day)]
    records, sources, warnings = await _statement_records(locations, explicit=explicit, http=http)
    complete = bool(sources) and all(s.error is None for s in sources)
    if not sources:
        warnings.append("no statement to compare with; missing-at-provider is not checked")
    report = await reconcile_day(
        sessions,
        day,
        records,
        clock=clock,
        heal=heal,
        progress=progress,
        on_total=on_total,
        check_missing_at_provider=complete,
    )
    run = ReconciliationRun(report, sources, warnings, time.perf_counter() - started)
    # Kept, and its open discrepancies filed in the exceptions queue a person works through.
    async with sessions() as session, session.begin():
        recorded = await record_run(
            session=session, report=report, now=clock.now(), started_at=started_at, extra=run.inputs()
        )
    run.run_id = recorded.run.id
    for warning in warnings:
        log.warning(warning, extra={"day": day.isoformat()})
    log.info(
        "reconciled",
        extra={
            "day": day.isoformat(),
            "provider_records": report.provider_records,
            "ledger_payments": report.ledger_payments,
            "healed": len(report.healed),
            "open": len(report.open),
            "filed": recorded.filed,
            "closed": recorded.closed,
            "elapsed_s": round(run.elapsed_s, 2),
        },
    )
    return run


# The command -----------------------------------------------------------------------------------


async def reconcile_command(
    settings: Settings, *, day: date | None, statements: Sequence[str], heal: bool, as_json: bool
) -> ReconciliationRun:
    """What ``somo reconcile`` does: a run with a progress bar on stderr, then the summary."""
    from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
    from lms_domain.db import create_engine, make_sessionmaker

    err = Console(stderr=True, highlight=False)
    # The command speaks through its summary and warnings below; without this, Python's
    # last-resort handler would print every domain warning (and ours twice) on stderr.
    logging.getLogger("somo").addHandler(logging.NullHandler())
    clock = SystemClock()
    day = day or previous_day(clock)
    engine = create_engine(settings.database.url)
    # Healing settles orders, which writes synced rows (entitlements): capture them as any write.
    install_change_capture()
    sessions = make_sessionmaker(engine, SyncContext(node_id=settings.sync.node_id, role=NodeRole.CENTRAL, clock=clock))
    columns = (
        TextColumn("reconciling {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task(day.isoformat(), total=None)
            run = await run_reconciliation(
                sessions,
                settings,
                day,
                statements=statements,
                heal=heal,
                clock=clock,
                progress=lambda n: bar.advance(task, n),
                on_total=lambda total: bar.update(task, total=total),
            )
    finally:
        await engine.dispose()
    for warning in run.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)  # one line each, for grep
    if as_json:
        sys.stdout.write(json.dumps(run.to_dict(), indent=2) + "\n")
    else:
        print_summary(run, Console(highlight=False))
    return run


def _money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "-"
    try:
        return str(Money(amount, currency))
    except DomainError:
        return f"{currency} {amount} (minor)"


def print_summary(run: ReconciliationRun, console: Console) -> None:
    """The counts per class, then the open discrepancies (the first few)."""
    report = run.report
    title = f"Reconciliation of {report.day.isoformat()} (Africa/Nairobi)" + ("" if report.heal else ", dry run")
    counts = Table(title=title, title_justify="left")
    for name in ("class", "found", "healed", "open"):
        counts.add_column(name, justify="left" if name == "class" else "right")
    totals = [0, 0, 0]
    for name, row in report.counts().items():
        values = [row["found"], row["healed"], row["open"]]
        totals = [a + b for a, b in zip(totals, values, strict=True)]
        counts.add_row(name.replace("_", " "), *(str(v) for v in values))
    counts.add_row("total", *(str(v) for v in totals), style="bold")
    console.print(counts)
    backfilled = sum(1 for b in report.backfills if b.applied)
    pending = len(report.backfills) - backfilled
    console.print(
        f"provider records {report.provider_records:,} (of {report.records_received:,} read), "
        f"ledger payments {report.ledger_payments:,}, matched {report.matched:,}, "
        f"receipts back-filled {backfilled:,}"
        + (f" ({pending:,} to back-fill)" if pending else "")
        + f", {run.elapsed_s:.1f} s"
    )
    if not report.checked_missing_at_provider:
        console.print("[yellow]missing at provider was not checked: no complete statement[/]")
    for source in run.statements:
        for bad in source.bad_lines[:SHOWN_BAD_LINES]:
            console.print(f"[yellow]bad line[/] {escape(source.location)}:{bad.line}: {escape(bad.reason)}")
    still_open = report.open
    if not still_open:
        return
    table = Table(title="Open discrepancies", title_justify="left")
    for name in ("class", "receipt", "provider", "ledger", "reason"):
        table.add_column(name, overflow="fold")
    for d in still_open[:SHOWN_DISCREPANCIES]:
        table.add_row(
            DiscrepancyClass(d.category).value.replace("_", " "),
            escape(d.receipt or d.checkout_request_id or "-"),
            _money(d.provider_amount_minor, d.currency),
            _money(d.ledger_amount_minor, d.currency),
            escape(d.reason + (f" (heal failed: {d.heal_error})" if d.heal_error else "")),
        )
    console.print(table)
    if len(still_open) > SHOWN_DISCREPANCIES:
        console.print(f"... and {len(still_open) - SHOWN_DISCREPANCIES} more; --json lists them all")
