"""M-Pesa STK callback settlement under load: N success callbacks for N pending intents, a share
of them delivered several times and out of order, posted at a fixed concurrency against one
`somo serve` process; then wait until every intent is settled and check the books.

Reported per backend, against a baseline measured in the same run on the same database
(`bench/settlement_baseline.py`: raw-driver insert of the body into a table, then the ack):

* acks/s and ack latency (p50, p95, p99, max) as Daraja sees them;
* settled/s = intents settled / (first request -> last settlement), the figure that matters:
  acks only say the body was stored;
* checks: one Payment, one journal entry, one receipt per intent, every intent succeeded,
  every order and invoice paid, every journal entry and the ledger as a whole sum to zero;
* a statement census of one settlement (in process, the real app, uncontended), the server's
  warnings and errors, and on Postgres what its backends were waiting on during the run.

Target (payments issue), on Postgres: at least 1,000 settled/s and p99 ack at most 50 ms.

    python -m bench.settlement_load [--backend sqlite|postgres|both] [--callbacks 10000]
        [--concurrency 50] [--seed 1] [--institutions 1] [--poller] [--profile DIR] [--logs DIR] [--json]

``--profile DIR`` runs py-spy on the server process for the whole load and writes collapsed
stacks (``DIR/somo-<backend>.txt``, flamegraph.pl or speedscope read them). The server's
payment poller is off unless ``--poller``: it settles waiting inbox rows and STK-queries old
pending intents, and there is no Daraja here to answer it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from rich.console import Console
from rich.table import Table
from sqlalchemy import event

from bench.api_load import free_port, wait_ready
from bench.databases import drop_database, fresh_database
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.changefeed.capture import _take_sequence
from lms_domain.changefeed.models import OutboxEntry
from lms_domain.clock import NAIROBI, SystemClock
from lms_domain.commerce.models import (
    Invoice,
    InvoiceStatus,
    LineItem,
    Order,
    OrderStatus,
    Price,
    PriceInterval,
    Product,
    ProductKind,
    Receipt,
)
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.entitlements.models import Entitlement
from lms_domain.ids import new_id
from lms_domain.ledger.accounts import MPESA_CLEARING, account_id, ensure_accounts
from lms_domain.ledger.models import JournalEntry, Posting
from lms_domain.money import Money, split_vat
from lms_domain.payments import flows
from lms_domain.payments.models import IntentStatus, Payment, PaymentIntent, Provider, WebhookEvent, WebhookStatus
from lms_domain.tenancy.models import Institution, Learner
from lms_domain.tenancy.service import account_no_for, create_institution
from server.api.callbacks import stk_callback_path
from server.app import create_app
from server.keys import callback_tasks_key, engine_key
from server.migrate import upgrade
from server.settings import CENTRAL_NODE_ID, DatabaseSettings, PaymentsSettings, RateLimitSettings, Settings

SECRET = "bench-callback-secret-0123456789"
PRICE_MINOR = 30_000  # KES 300, VAT inclusive
DUPLICATED_SHARE = 0.30
MAX_EXTRA_COPIES = 5
REORDERED_SHARE = 0.10
# A retry arrives within about this many deliveries of the callback it repeats (a second or
# so at the rates measured here, like Daraja's undocumented retries).
RETRY_SPREAD = 1_000
CENSUS_INTENTS = 3  # settled in process before the load, to count one settlement's statements
POLL_S = 0.5  # the last settlement is timed by resolved_at, not by the poll
TARGET_SETTLED_PER_S = 1_000
TARGET_P99_MS = 50.0


# The world: N pending intents, as checkout leaves them ------------------------------------


@dataclass(frozen=True)
class Callback:
    checkout_id: str
    body: bytes


def stk_success_body(checkout_id: str, amount_minor: int, msisdn: str, paid_at: datetime) -> bytes:
    """Daraja's success callback (``shared/reference/daraja.md`` §4.3, with the Balance item)."""
    receipt = "S" + hashlib.sha256(checkout_id.encode()).hexdigest()[:9].upper()
    callback = {
        "MerchantRequestID": f"{int(receipt[1:6], 16)}-{checkout_id[-8:]}-1",
        "CheckoutRequestID": checkout_id,
        "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {
            "Item": [
                {"Name": "Amount", "Value": amount_minor // 100},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(paid_at.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(msisdn.lstrip("+"))},
            ]
        },
    }
    return json.dumps({"Body": {"stkCallback": callback}}).encode()


async def prepare(url: str, n: int, *, institutions: int, seed: int) -> list[Callback]:
    """Institutions with a product, a price and their ledger chart (ORM, change capture on);
    then per intent a learner, a pending order with its line item and open invoice, and a
    pending STK intent with its CheckoutRequestID, bulk-inserted with Core."""
    install_change_capture()
    rng = random.Random(seed)
    engine = create_engine(url)
    clock = SystemClock()
    context = SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL, clock=clock)
    makers = make_sessionmaker(engine, context)
    now = clock.now()
    created = now - timedelta(seconds=30)  # the prompts went out a little while ago
    schools: list[tuple[Institution, Product, Price]] = []
    async with makers() as session, session.begin():
        for k in range(institutions):
            inst = await create_institution(session=session, name=f"Bench School {k}", code=f"BENCH{k}")
            product = Product(
                id=new_id(),
                institution_id=inst.id,
                sku="SOMO-PREMIUM",
                kind=ProductKind.SUBSCRIPTION,
                name_en="Premium",
            )
            session.add(product)
            await session.flush()
            price = Price(
                id=new_id(),
                institution_id=inst.id,
                product_id=product.id,
                amount_minor=PRICE_MINOR,
                interval=PriceInterval.MONTH,
            )
            session.add(price)
            await session.flush()
            await ensure_accounts(session, inst.id, "KES")  # a school that has been paid before
            schools.append((inst, product, price))

    vat = split_vat(Money(PRICE_MINOR), schools[0][0].vat_rate_bp)
    learners: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    invoices: list[dict[str, Any]] = []
    intents: list[dict[str, Any]] = []
    callbacks: list[Callback] = []
    account_nos: set[str] = set()
    invoice_numbers: Counter[uuid.UUID] = Counter()
    for i in range(n):
        inst, product, price = schools[i % institutions]
        learner_id = new_id()
        while account_no_for(learner_id) in account_nos:  # 9 random digits: rare, but unique
            learner_id = new_id()
        account_nos.add(account_no_for(learner_id))
        msisdn = f"+2547{rng.randrange(10**8):08d}"
        learners.append(
            {
                "id": learner_id,
                "institution_id": inst.id,
                "display_name": f"Learner {i}",
                "account_no": account_no_for(learner_id),
                "hlc": context.hlc.tick(),
                "origin_node_id": CENTRAL_NODE_ID,
                "created_at": created,
                "updated_at": created,
            }
        )
        order_id, checkout_id = new_id(), f"ws_CO_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}"
        orders.append(
            {
                "id": order_id,
                "institution_id": inst.id,
                "learner_id": learner_id,
                "status": OrderStatus.PENDING,
                "currency": "KES",
                "subtotal_minor": PRICE_MINOR,
                "discount_minor": 0,
                "total_minor": PRICE_MINOR,
                "created_at": created,
                "updated_at": created,
            }
        )
        items.append(
            {
                "id": new_id(),
                "institution_id": inst.id,
                "order_id": order_id,
                "product_id": product.id,
                "price_id": price.id,
                "description": product.name_en,
                "quantity": 1,
                "unit_amount_minor": PRICE_MINOR,
                "total_minor": PRICE_MINOR,
                "created_at": created,
                "updated_at": created,
            }
        )
        invoice_numbers[inst.id] += 1
        invoices.append(
            {
                "id": new_id(),
                "institution_id": inst.id,
                "order_id": order_id,
                "number": f"INV-{invoice_numbers[inst.id]:06d}",
                "currency": "KES",
                "total_minor": PRICE_MINOR,
                "vat_rate_bp": vat.rate_bp,
                "vat_minor": vat.vat.amount_minor,
                "net_minor": vat.net.amount_minor,
                "status": InvoiceStatus.OPEN,
                "issued_at": created,
                "created_at": created,
                "updated_at": created,
            }
        )
        intents.append(
            {
                "id": new_id(),
                "institution_id": inst.id,
                "learner_id": learner_id,
                "order_id": order_id,
                "provider": Provider.MPESA,
                "currency": "KES",
                "amount_minor": PRICE_MINOR,
                "msisdn": msisdn,
                "account_reference": account_no_for(learner_id),
                "description": flows.STK_DESCRIPTION,
                "idempotency_key": f"bench-{order_id}",
                "status": IntentStatus.PENDING,
                "provider_request_id": checkout_id,
                "merchant_request_id": f"bench-{i}",
                "requested_at": created,
                "created_at": created,
                "updated_at": created,
            }
        )
        callbacks.append(Callback(checkout_id, stk_success_body(checkout_id, PRICE_MINOR, msisdn, now)))

    async with makers() as session, session.begin():
        # The learners' own change-feed entries, as create_learner's flush would have written.
        by_scope: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in learners:
            by_scope[str(row["institution_id"])].append(row)
        for scope, rows in sorted(by_scope.items()):
            # The production sequence taker, so the counter ends where a real checkout leaves it.
            last = await session.run_sync(_take_sequence, scope, len(rows))
            for offset, row in enumerate(rows):
                row["change_seq"] = last - len(rows) + 1 + offset
                outbox.append(
                    {
                        "id": new_id(),
                        "scope": scope,
                        "seq": row["change_seq"],
                        "table_name": Learner.__tablename__,
                        "row_id": row["id"],
                        "op": "upsert",
                        "hlc": row["hlc"],
                        "origin_node_id": CENTRAL_NODE_ID,
                        "created_at": created,
                    }
                )
        conn = await session.connection()
        for model, rows in (
            (Learner, learners),
            (OutboxEntry, outbox),
            (Order, orders),
            (LineItem, items),
            (Invoice, invoices),
            (PaymentIntent, intents),
        ):
            for start in range(0, len(rows), 2_000):
                await conn.execute(sa.insert(model), rows[start : start + 2_000])
    await engine.dispose()
    return callbacks


def plan_deliveries(n: int, rng: random.Random) -> list[int]:
    """The order callbacks reach us, as indexes into the callbacks: each once, a share of them
    repeated 1-5 times shortly after, and a share delivered at a random point of the run
    (so a retry may even overtake the first delivery)."""
    keyed: list[tuple[float, int]] = [(float(i), i) for i in range(n)]
    for i in rng.sample(range(n), round(n * DUPLICATED_SHARE)):
        keyed += [(i + rng.uniform(1, RETRY_SPREAD), i) for _ in range(rng.randint(1, MAX_EXTRA_COPIES))]
    for i in rng.sample(range(n), round(n * REORDERED_SHARE)):
        keyed[i] = (rng.uniform(0, n), i)  # the first n entries are the first deliveries, in order
    keyed.sort()
    return [i for _, i in keyed]


# Measuring ----------------------------------------------------------------------------------


@dataclass
class Run:
    backend: str
    server: str
    deliveries: int = 0
    errors: int = 0
    load_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    settled: int | None = None
    settle_s: float | None = None
    settled_at_last_ack: int | None = None
    settled_per_s_by_tenth: list[float] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    census: dict[str, Any] = field(default_factory=dict)
    pg_waits: dict[str, int] = field(default_factory=dict)
    pg_lock_waiters: dict[str, int] = field(default_factory=dict)
    pg_stats: dict[str, int] = field(default_factory=dict)
    server_log: dict[str, int] = field(default_factory=dict)
    profile: str | None = None

    @property
    def acks_per_s(self) -> float:
        return self.deliveries / self.load_s if self.load_s else float("nan")

    @property
    def settled_per_s(self) -> float | None:
        return self.settled / self.settle_s if self.settled and self.settle_s else None

    def pct(self, q: float) -> float:
        if len(self.latencies_ms) < 2:
            return float("nan")
        return statistics.quantiles(self.latencies_ms, n=1000, method="inclusive")[round(q * 10) - 1]

    @property
    def passed(self) -> bool | None:
        return all(v is True for k, v in self.checks.items() if k.startswith("ok_")) if self.checks else None

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"]
        data |= {
            "acks_per_s": round(self.acks_per_s, 1),
            "ack_p50_ms": round(self.pct(50), 2),
            "ack_p95_ms": round(self.pct(95), 2),
            "ack_p99_ms": round(self.pct(99), 2),
            "ack_max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "settled_per_s": None if self.settled_per_s is None else round(self.settled_per_s, 1),
            "passed": self.passed,
        }
        return data


async def post_all(
    base_url: str, callbacks: list[Callback], order: list[int], concurrency: int, run: Run
) -> tuple[float, float]:
    """POST the deliveries in ``order`` with ``concurrency`` workers; (first send, last ack) in time.time()."""
    path = stk_callback_path(SECRET)
    headers = {"Content-Type": "application/json", "User-Agent": "Apache-HttpClient/4.5.5 (Java/1.8.0)"}
    queue: Iterator[int] = iter(order)
    latencies = run.latencies_ms
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base_url, connector=connector) as http:

        async def warm() -> None:
            async with http.get("/health") as response:
                await response.read()

        # Open the connections first, so the measured run does not pay for the handshakes.
        await asyncio.gather(*(warm() for _ in range(concurrency)))

        async def worker() -> None:
            for index in queue:
                started = time.perf_counter()
                try:
                    async with http.post(path, data=callbacks[index].body, headers=headers) as response:
                        answer = await response.read()
                        ok = response.status == 200 and json.loads(answer).get("ResultCode") == 0
                except aiohttp.ClientError:
                    ok = False
                latencies.append((time.perf_counter() - started) * 1000)
                run.errors += 0 if ok else 1

        first = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.load_s = time.perf_counter() - started
    run.deliveries = len(latencies)
    return first, first + run.load_s


async def settled_so_far(reader: Any) -> tuple[int, datetime | None]:
    async with reader() as session:
        row = (
            await session.execute(
                sa.select(sa.func.count(), sa.func.max(PaymentIntent.resolved_at)).where(
                    PaymentIntent.status == IntentStatus.SUCCEEDED
                )
            )
        ).one()
    return int(row[0]), row[1]


async def settle_rate_by_tenth(reader: Any, first: float) -> list[float]:
    """Settled/s within each tenth of the settlements, in order: does it slow down as the books grow?"""
    async with reader() as session:
        times = sorted(
            at.timestamp()
            for at in await session.scalars(
                sa.select(PaymentIntent.resolved_at).where(PaymentIntent.status == IntentStatus.SUCCEEDED)
            )
            if at is not None and at.timestamp() >= first
        )
    if len(times) < 20:
        return []
    size = len(times) // 10
    edges = [first] + [times[(k + 1) * size - 1] for k in range(10)]
    return [round(size / max(edges[k + 1] - edges[k], 1e-9), 1) for k in range(10)]


async def sample_pg_activity(dsn: str, database: str, run: Run, stop: asyncio.Event) -> None:
    """What the benchmark database's backends are doing, every 50 ms, until ``stop``."""
    conn = await asyncpg.connect(dsn)
    waits: Counter[str] = Counter()
    waiters: Counter[str] = Counter()
    try:
        while not stop.is_set():
            rows = await conn.fetch(
                "SELECT state, wait_event_type, wait_event, query FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
                database,
            )
            for row in rows:
                if row["state"] == "active":
                    waits[f"{row['wait_event_type'] or 'CPU'}:{row['wait_event'] or '-'}"] += 1
                    if row["wait_event_type"] == "Lock":
                        waiters[_statement_label(row["query"] or "")] += 1
                else:
                    waits[row["state"] or "?"] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await conn.close()
    run.pg_waits = dict(waits.most_common())
    run.pg_lock_waiters = dict(waiters.most_common(8))


# Writes only: the benchmark's own polling reads would swamp tup_fetched and tup_returned.
PG_STAT_COLUMNS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated")


async def pg_database_stats(dsn: str, database: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(PG_STAT_COLUMNS)} FROM pg_stat_database WHERE datname = $1",  # noqa: S608 (constants)
            database,
        )
    finally:
        await conn.close()
    assert row is not None
    return {name: int(row[name]) for name in PG_STAT_COLUMNS}


def start_server(
    module: list[str], url: str, port: int, log_path: Path, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **(extra_env or {}),
        "SOMO_DATABASE__URL": url,
        "SOMO_RATE_LIMIT__ENABLED": "false",
        "SOMO_HTTP__PORT": str(port),
        "SOMO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SOMO_PAYMENTS__CALLBACK_SECRET": SECRET,
    }
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", *module], env=env, stdout=log, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    return subprocess.Popen(
        [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise_log(path: Path) -> dict[str, int]:
    """Warnings and errors the server logged, counted by (level, message)."""
    seen: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if "Error" in line or "Traceback" in line:
                seen[f"text: {line[:120]}"] += 1
            continue
        level = str(record.get("level", record.get("levelname", ""))).upper()
        if level in ("WARNING", "ERROR", "CRITICAL"):
            message = str(record.get("msg", record.get("message", "")))
            seen[f"{level}: {re.sub(r'[0-9a-f-]{32,36}', '<id>', message)[:120]}"] += 1
            if record.get("exc"):
                exc = str(record["exc"]).strip().splitlines()[-1]
                seen[f"{level} exception: {exc[:160]}"] += 1
    return dict(seen.most_common(10))


async def measure_somo(
    backend: str,
    url: str,
    dsn: str,
    callbacks: list[Callback],
    order: list[int],
    args: argparse.Namespace,
    workdir: Path,
) -> Run:
    run = Run(backend, "somo")
    port = free_port()
    log_path = workdir / f"somo-{backend}.log"
    # The payment poller also settles inbox rows left "received", in one transaction per pass,
    # and STK-queries pending intents (there is no Daraja here to answer): off unless --poller.
    server = start_server(
        ["server.cli", "serve"],
        url,
        port,
        log_path,
        {} if args.poller else {"SOMO_PAYMENTS__POLL_INTERVAL_S": "0"},
    )
    profiler = None
    sampler_stop = asyncio.Event()
    sampler: asyncio.Task[None] | None = None
    reader_engine = create_engine(url, pool_size=1)
    reader = make_sessionmaker(reader_engine, SyncContext(node_id=CENTRAL_NODE_ID), read_only=True)
    database = url.rsplit("/", 1)[1]
    try:
        await wait_ready(f"http://127.0.0.1:{port}/health")
        before, _ = await settled_so_far(reader)
        stats_before = await pg_database_stats(dsn, database) if backend == "postgres" else {}
        if args.profile:
            out = Path(args.profile) / f"somo-{backend}.txt"
            profiler = start_profiler(server.pid, out)
            run.profile = str(out) if profiler else "py-spy not found"
            await asyncio.sleep(0.5)
        if backend == "postgres":
            sampler = asyncio.create_task(sample_pg_activity(dsn, database, run, sampler_stop))
        first, _ = await post_all(f"http://127.0.0.1:{port}", callbacks, order, args.concurrency, run)
        run.settled_at_last_ack = (await settled_so_far(reader))[0] - before
        # Settled when every intent is; given up when nothing moved for --stall seconds.
        settled, last_at, progress_at = 0, None, time.monotonic()
        while True:
            count, last_at = await settled_so_far(reader)
            if count - before != settled:
                settled, progress_at = count - before, time.monotonic()
            if settled >= len(callbacks) or time.monotonic() - progress_at > args.stall:
                break
            await asyncio.sleep(POLL_S)
        run.settled = settled
        run.settle_s = (last_at.timestamp() - first) if last_at is not None else None
        run.settled_per_s_by_tenth = await settle_rate_by_tenth(reader, first)
        if sampler is not None:
            sampler_stop.set()
            await sampler
    finally:
        if profiler is not None:
            stop(profiler)
        stop(server)
        await reader_engine.dispose()
    if backend == "postgres":
        await asyncio.sleep(1.0)  # statistics reach pg_stat_database when a backend is idle or exits
        after = await pg_database_stats(dsn, database)
        run.pg_stats = {k: after[k] - stats_before[k] for k in PG_STAT_COLUMNS}
    run.server_log = summarise_log(log_path)
    if args.logs:
        shutil.copy(log_path, Path(args.logs) / log_path.name)
    return run


async def measure_baseline(
    backend: str, url: str, callbacks: list[Callback], order: list[int], args: argparse.Namespace, workdir: Path
) -> Run:
    run = Run(backend, "baseline")
    port = free_port()
    server = start_server(["bench.settlement_baseline", url, str(port)], url, port, workdir / f"baseline-{backend}.log")
    try:
        await wait_ready(f"http://127.0.0.1:{port}/health")
        await post_all(f"http://127.0.0.1:{port}", callbacks, order, args.concurrency, run)
    finally:
        stop(server)
    return run


# The statement census -----------------------------------------------------------------------

_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+\"?(\w+)", re.IGNORECASE)


def _statement_label(sql: str) -> str:
    words = sql.strip().split(None, 2)
    if not words:
        return "?"
    verb = words[0].upper()
    if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT"):
        return verb if verb != "RELEASE" else "RELEASE SAVEPOINT"
    table = _TABLE.search(sql)
    label = f"{verb} {table.group(1) if table else '?'}"
    if "FOR UPDATE" in sql.upper():
        label += " FOR UPDATE"
    if "count(" in sql.lower():
        label += " (count)"
    return label


async def census(url: str, callbacks: list[Callback]) -> dict[str, Any]:
    """Statements of one delivery, its settlement, a copy after settlement and a copy delivered
    while the first is being settled, through the real app in this process, uncontended and
    warm (the first callback only warms caches up)."""
    warm, first, second = callbacks
    app = create_app(
        Settings(
            database=DatabaseSettings(url=url),
            rate_limit=RateLimitSettings(enabled=False),
            payments=PaymentsSettings(callback_secret=SECRET, poll_interval_s=0),
            log_level="WARNING",
        )
    )
    # Statements by (phase, task): request tasks write the inbox row, the rest is settling
    # (a task per callback, or long-lived workers, whichever the app uses).
    phase = ["warm"]
    by_task: dict[tuple[str, int], list[str]] = defaultdict(list)
    timing: dict[tuple[str, int], list[float]] = defaultdict(list)
    serials: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()
    numbering = itertools.count()

    def record(label: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        if task not in serials:
            serials[task] = next(numbering)  # not len(serials): dead tasks leave the weak map
        key = (phase[0], serials[task])
        by_task[key].append(label)
        timing[key].append(time.perf_counter())

    def on_execute(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        record(_statement_label(statement))

    path = stk_callback_path(SECRET)
    async with TestClient(TestServer(app)) as client:

        async def deliver(callback: Callback) -> None:
            async with client.post(path, data=callback.body) as response:
                await response.read()

        await deliver(warm)
        await app[callback_tasks_key].drain()
        engine = app[engine_key].sync_engine
        event.listen(engine, "before_cursor_execute", on_execute)
        event.listen(engine, "commit", lambda _conn: record("COMMIT"))
        event.listen(engine, "rollback", lambda _conn: record("ROLLBACK"))
        phase[0] = "first"
        started, cpu_started = time.perf_counter(), time.process_time()
        await deliver(first)
        await app[callback_tasks_key].drain()
        wall_ms, cpu_ms = (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000
        phase[0] = "copy"
        await deliver(first)
        await app[callback_tasks_key].drain()
        phase[0] = "pair"
        await asyncio.gather(deliver(second), deliver(second))
        await app[callback_tasks_key].drain()

    def acks(name: str) -> list[list[str]]:
        return [v for (p, _), v in by_task.items() if p == name and "INSERT webhook_events" in v]

    def settling(name: str) -> list[str]:
        return [label for (p, _), v in by_task.items() if p == name and "INSERT webhook_events" not in v for label in v]

    settle_times = [
        at for key, v in by_task.items() if key[0] == "first" and "INSERT webhook_events" not in v for at in timing[key]
    ]
    pair_acks = acks("pair")
    return {
        "ack: first delivery": acks("first")[0],
        "settlement": settling("first"),
        "ack: copy after settlement": acks("copy")[0],
        "settling statements after a copy of a settled callback": len(settling("copy")),
        "ack: second of two concurrent copies": pair_acks[-1] if len(pair_acks) > 1 else [],
        "settling statements for two concurrent copies": len(settling("pair")),
        "settlement wall ms": round((max(settle_times) - min(settle_times)) * 1000, 1) if settle_times else None,
        "deliver+settle wall ms": round(wall_ms, 1),
        "deliver+settle cpu ms (client included)": round(cpu_ms, 1),
    }


# Checking the books -------------------------------------------------------------------------


async def verify(url: str, expected: int) -> dict[str, Any]:
    """Exactly-once and balance, over every intent of the database (the census ones included)."""
    engine = create_engine(url, pool_size=1)
    reader = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID), read_only=True)

    async def count(stmt: Any) -> int:
        async with reader() as session:
            return int(await session.scalar(stmt) or 0)

    def rows(model: Any, *where: Any) -> Any:
        return sa.select(sa.func.count()).select_from(model).where(*where)

    try:
        intents = await count(rows(PaymentIntent))
        succeeded = await count(rows(PaymentIntent, PaymentIntent.status == IntentStatus.SUCCEEDED))
        payments = await count(rows(Payment))
        doubled = await count(
            sa.select(sa.func.count()).select_from(
                sa.select(Payment.intent_id).group_by(Payment.intent_id).having(sa.func.count() > 1).subquery()
            )
        )
        intents_with_payment = await count(sa.select(sa.func.count(sa.distinct(Payment.intent_id))))
        entries = await count(rows(JournalEntry, JournalEntry.source_type == flows.LEDGER_SOURCE))
        entry_sources = await count(
            sa.select(sa.func.count(sa.distinct(JournalEntry.source_id))).where(
                JournalEntry.source_type == flows.LEDGER_SOURCE
            )
        )
        unbalanced_entries = await count(
            sa.select(sa.func.count()).select_from(
                sa.select(Posting.entry_id)
                .group_by(Posting.entry_id)
                .having(sa.func.sum(Posting.amount_minor) != 0)
                .subquery()
            )
        )
        async with reader() as session:
            per_currency = {
                currency: int(total)
                for currency, total in await session.execute(
                    sa.select(Posting.currency, sa.func.sum(Posting.amount_minor)).group_by(Posting.currency)
                )
            }
            institution_ids = list(await session.scalars(sa.select(Institution.id)))
            clearing = int(
                await session.scalar(
                    sa.select(sa.func.coalesce(sa.func.sum(Posting.amount_minor), 0)).where(
                        Posting.account_id.in_([account_id(i, MPESA_CLEARING) for i in institution_ids])
                    )
                )
                or 0
            )
            requested = int(
                await session.scalar(
                    sa.select(sa.func.coalesce(sa.func.sum(PaymentIntent.amount_minor), 0)).where(
                        PaymentIntent.status == IntentStatus.SUCCEEDED
                    )
                )
                or 0
            )
            errors: Counter[str] = Counter()
            for error, n in await session.execute(
                sa.select(WebhookEvent.error, sa.func.count())
                .where(WebhookEvent.error.is_not(None))
                .group_by(WebhookEvent.error)
            ):
                errors[re.sub(r"[0-9a-f-]{32,36}|\b[A-Z0-9]{10}\b|ws_CO_\w+", "<id>", str(error))[:100]] += int(n)
            events = {
                str(status): int(n)
                for status, n in await session.execute(
                    sa.select(WebhookEvent.status, sa.func.count()).group_by(WebhookEvent.status)
                )
            }
        paid_orders = await count(rows(Order, Order.status == OrderStatus.PAID))
        paid_invoices = await count(rows(Invoice, Invoice.status == InvoiceStatus.PAID))
        receipts = await count(rows(Receipt))
        entitlements = await count(rows(Entitlement))
        stuck_events = await count(
            rows(WebhookEvent, WebhookEvent.error.is_not(None), WebhookEvent.status == WebhookStatus.RECEIVED)
        )
    finally:
        await engine.dispose()
    return {
        "intents": intents,
        "succeeded": succeeded,
        "payments": payments,
        "journal_entries": entries,
        "receipts": receipts,
        "entitlements": entitlements,
        "postings_sum_by_currency": per_currency,
        "webhook_events_by_status": events,
        "webhook_event_errors": dict(errors.most_common(5)),
        "webhook_events_received_with_error": stuck_events,
        "ok_every_intent_succeeded": intents == expected and succeeded == expected,
        "ok_one_payment_per_intent": payments == expected and doubled == 0 and intents_with_payment == expected,
        "ok_one_journal_entry_per_intent": entries == expected and entry_sources == expected,
        "ok_every_entry_balances": unbalanced_entries == 0,
        "ok_ledger_sums_to_zero": all(total == 0 for total in per_currency.values()) and bool(per_currency),
        "ok_clearing_equals_paid": clearing == requested,
        "ok_orders_invoices_receipts_entitlements": paid_orders
        == paid_invoices
        == receipts
        == entitlements
        == expected,
    }


# Running ------------------------------------------------------------------------------------


def machine(postgres_dsn: str | None) -> dict[str, Any]:
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
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
    if postgres_dsn:

        async def settings() -> dict[str, str]:
            conn = await asyncpg.connect(postgres_dsn)
            try:
                names = ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")
                return {name: await conn.fetchval(f"SHOW {name}") for name in names}
            finally:
                await conn.close()

        info["postgres"] = asyncio.run(settings())
    return info


def run_backend(backend: str, args: argparse.Namespace, workdir: Path, console: Console) -> list[Run]:
    url = asyncio.run(fresh_database(backend, args.postgres, str(workdir)))
    try:
        t0 = time.perf_counter()
        upgrade(url)
        callbacks = asyncio.run(
            prepare(url, args.callbacks + CENSUS_INTENTS, institutions=args.institutions, seed=args.seed)
        )
        load, spare = callbacks[: args.callbacks], callbacks[args.callbacks :]
        order = plan_deliveries(len(load), random.Random(args.seed))
        console.print(
            f"[bold]{backend}[/]: {len(load):,} intents ready in {time.perf_counter() - t0:.1f}s; "
            f"{len(order):,} deliveries at {args.concurrency} concurrent"
        )
        baseline = asyncio.run(measure_baseline(backend, url, load, order, args, workdir))
        census_result = asyncio.run(census(url, spare))
        somo = asyncio.run(measure_somo(backend, url, args.postgres, load, order, args, workdir))
        somo.census = census_result
        somo.checks = asyncio.run(verify(url, len(callbacks)))
        return [baseline, somo]
    finally:
        asyncio.run(drop_database(url, args.postgres))


def render(runs: list[Run], info: dict[str, Any], args: argparse.Namespace, console: Console) -> None:
    table = Table(
        title=f"STK callback settlement, one server process: {args.callbacks:,} callbacks, "
        f"{DUPLICATED_SHARE:.0%} duplicated 1-{MAX_EXTRA_COPIES}x, {REORDERED_SHARE:.0%} reordered, "
        f"{args.concurrency} concurrent, {args.institutions} institution(s), poller {'on' if args.poller else 'off'}\n"
        f"{info.get('cpu', '?')}, {info['cpus']} cores, Python {info['python']}, SQLite {info['sqlite']}, "
        f"commit {info.get('commit', '?')}"
        + (f", PostgreSQL {info['postgres']['server_version']}" if "postgres" in info else "")
    )
    for column in (
        "backend",
        "server",
        "deliveries",
        "errors",
        "acks/s",
        "ack p50 ms",
        "ack p95 ms",
        "ack p99 ms",
        "ack max ms",
        "settled",
        "settled at last ack",
        "settled/s",
        "checks",
    ):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            r.backend,
            r.server,
            f"{r.deliveries:,}",
            str(r.errors),
            f"{r.acks_per_s:,.0f}",
            f"{r.pct(50):.1f}",
            f"{r.pct(95):.1f}",
            f"{r.pct(99):.1f}",
            f"{max(r.latencies_ms, default=float('nan')):.0f}",
            "-" if r.settled is None else f"{r.settled:,}",
            "-" if r.settled_at_last_ack is None else f"{r.settled_at_last_ack:,}",
            "-" if r.settled_per_s is None else f"{r.settled_per_s:,.0f}",
            {None: "-", True: "[green]pass[/]", False: "[red]FAIL[/]"}[r.passed],
        )
    console.print(table)
    for r in runs:
        if r.server != "somo":
            continue
        if r.backend == "postgres":
            settled_ok = (r.settled_per_s or 0) >= TARGET_SETTLED_PER_S
            p99_ok = r.pct(99) <= TARGET_P99_MS
            console.print(
                f"postgres target: settled/s >= {TARGET_SETTLED_PER_S:,}: {'met' if settled_ok else 'NOT met'}; "
                f"p99 ack <= {TARGET_P99_MS:g} ms: {'met' if p99_ok else 'NOT met'}"
            )
        if r.settled_per_s_by_tenth:
            console.print(f"{r.backend} settled/s by tenth of the run: {r.settled_per_s_by_tenth}")
        failed = {k: v for k, v in r.checks.items() if k.startswith("ok_") and v is not True}
        if failed:
            console.print(f"[red]{r.backend} checks failed[/]: {', '.join(failed)}; details: {r.checks}")
        settle = r.census.get("settlement", [])
        console.print(
            f"{r.backend} census: {len(r.census.get('ack: first delivery', []))} statements to ack, "
            f"{len(settle)} to settle ({r.census.get('settlement wall ms')} ms wall, deliver+settle "
            f"{r.census.get('deliver+settle cpu ms (client included)')} ms CPU, uncontended): "
            + ", ".join(f"{label} x{n}" if n > 1 else label for label, n in Counter(settle).items())
        )
        if r.pg_waits:
            console.print(f"{r.backend} backend samples (state or wait): {r.pg_waits}")
            console.print(f"{r.backend} statements waiting on a lock: {r.pg_lock_waiters}")
        if r.server_log:
            console.print(f"{r.backend} server warnings/errors: {r.server_log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--callbacks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--institutions", type=int, default=1, help="intents are spread over this many schools")
    parser.add_argument("--stall", type=float, default=60, help="give up when nothing settles for this long (s)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server during the load into DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--logs", metavar="DIR", help="keep the server logs in DIR")
    parser.add_argument("--poller", action="store_true", help="leave the server's payment poller on")
    parser.add_argument(
        "--postgres", default=os.environ.get("SOMO_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    for folder in (args.profile, args.logs):
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    console = Console(width=160, stderr=args.json)
    info = machine(args.postgres if "postgres" in backends else None)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            runs += run_backend(backend, args, Path(tmp), console)
    render(runs, info, args, console)
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "settlement_load",
                    "machine": info,
                    "config": {
                        "callbacks": args.callbacks,
                        "concurrency": args.concurrency,
                        "seed": args.seed,
                        "institutions": args.institutions,
                        "poller": args.poller,
                        "duplicated_share": DUPLICATED_SHARE,
                        "max_extra_copies": MAX_EXTRA_COPIES,
                        "reordered_share": REORDERED_SHARE,
                    },
                    "targets": {"postgres_settled_per_s": TARGET_SETTLED_PER_S, "postgres_ack_p99_ms": TARGET_P99_MS},
                    "results": [r.summary() for r in runs],
                },
                indent=2,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
