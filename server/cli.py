"""The ``somo`` command.

Every command fails with one readable line and a non-zero exit status, never a
traceback: an operator at a school should be able to act on what it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from lms_domain.errors import DomainError
from server.settings import Settings, describe_validation_error

EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_DATABASE = 4
EXIT_DOMAIN = 5


class CliError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="somo", description="Somo: offline-first learning for Kenya.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the central server")
    serve.add_argument("--host", help="interface to bind (default: SOMO_HTTP__HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default: SOMO_HTTP__PORT)")

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")

    admin = sub.add_parser("create-admin", help="create a platform admin (or an institution admin)")
    admin.add_argument("--username", required=True)
    admin.add_argument("--password", help="the password (default: $SOMO_ADMIN_PASSWORD, or asked for on the terminal)")
    admin.add_argument("--institution", metavar="CODE", help="make an institution admin of this school instead")
    admin.add_argument("--full-name", default="")

    simulate = sub.add_parser(
        "simulate",
        help="run the provider simulators (M-Pesa, Airtel Money, Africa's Talking, Azure SMS and email) on loopback",
    )
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, help="default: the port of SOMO_PAYMENTS__SIMULATOR_URL")
    simulate.add_argument("--seed", type=int, default=0, help="outcomes and faults are deterministic per seed")
    simulate.add_argument(
        "--sms-duplicate-reports",
        type=float,
        default=0.0,
        metavar="CHANCE",
        help="chance (0-1) that each SMS delivery report and inbound SMS is posted twice (default: 0)",
    )

    sub.add_parser("worker", help="run the scheduled jobs (renewals, dunning, reconciliation, clean-up, notifications)")
    jobs = sub.add_parser("jobs", help="list the scheduled jobs, or run one now")
    jobs_sub = jobs.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    jobs_sub.add_parser("list", help="every job and when it runs")
    run_one = jobs_sub.add_parser("run", help="run a job now (skipped if another process is running it)")
    run_one.add_argument("name", help="the job's name, as `somo jobs list` shows it")

    register = sub.add_parser(
        "register-c2b", help="register every active paybill's C2B confirmation and validation URLs with Daraja"
    )
    register.add_argument("--shortcode", help="only this paybill")

    # Listed for --help only: the somo script hands `edge` to edge_node.cli, which builds on this
    # package (server must not import the edge).
    edge = sub.add_parser("edge", help="a school's edge node: init, run, sync, status (somo edge --help)")
    edge.add_argument("edge_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    seed = sub.add_parser("seed", help="load the demo data (idempotent)")
    seed.add_argument("--clear", action="store_true", help="remove the demo data first")

    reconcile = sub.add_parser(
        "reconcile",
        help="compare a day's provider records with the ledger; heal what is safe, report the rest",
        epilog="exit status: 0 nothing left open, 1 discrepancies remain, 2 a named statement is unreadable",
    )
    reconcile.add_argument("--date", type=_iso_date, help="the Nairobi calendar day, YYYY-MM-DD (default: yesterday)")
    reconcile.add_argument(
        "--statement",
        action="append",
        default=[],
        metavar="PATH_OR_URL",
        help="org-portal statement CSV, a file or an http(s) URL; repeatable (default: the simulator's)",
    )
    reconcile.add_argument("--dry-run", action="store_true", help="report only; heal nothing")
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON on stdout")

    ussd = sub.add_parser(
        "ussd", help="a feature phone in the terminal: dial the USSD menu over Africa's Talking's protocol"
    )
    ussd.add_argument("--phone", default="+254700000001", help="the number dialling (07.., 01.., +254..)")
    ussd.add_argument("--url", help="the USSD endpoint (default: SOMO_HTTP__PUBLIC_URL/ussd/africastalking)")
    ussd.add_argument("--network", help="AT networkCode, e.g. 63902 Safaricom, 63903 Airtel (default: by prefix)")
    ussd.add_argument("--service-code", help="the code dialled (default: SOMO_USSD__SERVICE_CODE)")
    return parser


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: use YYYY-MM-DD") from None


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise CliError(f"invalid configuration: {describe_validation_error(exc)}", EXIT_CONFIG) from None


def _safe_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _database_error(exc: BaseException, url: str) -> CliError | None:
    """Map driver and network failures to one line; None if it is not such a failure."""
    import sqlalchemy.exc

    if isinstance(exc, sqlalchemy.exc.DBAPIError | OSError | ConnectionError | TimeoutError):
        reason = getattr(exc, "orig", None) or exc
        text = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
        if "no such table" in text or ("relation" in text and "does not exist" in text):
            text += " (run `somo migrate` first)"
        return CliError(f"cannot use the database at {_safe_url(url)}: {text}", EXIT_DATABASE)
    if type(exc).__module__.startswith("asyncpg"):
        text = str(exc)
        if "does not exist" in text and "relation" in text:
            text += " (run `somo migrate` first)"
        return CliError(f"cannot use the database at {_safe_url(url)}: {text}", EXIT_DATABASE)
    return None


def _run(coro_factory: Callable[[], Coroutine[Any, Any, None]], settings: Settings) -> None:
    try:
        asyncio.run(coro_factory())
    except DomainError as exc:
        raise CliError(exc.detail, EXIT_DOMAIN) from None
    except Exception as exc:
        mapped = _database_error(exc, settings.database.url)
        if mapped is None:
            raise
        raise mapped from None


def _prepare_sqlite_dir(settings: Settings) -> None:
    try:
        settings.database.ensure_sqlite_dir()
    except OSError as exc:
        raise CliError(
            f"cannot create the folder of {_safe_url(settings.database.url)}: {exc}", EXIT_DATABASE
        ) from None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from aiohttp import web

    from server.app import create_app
    from server.heap import freeze_heap_after_startup
    from server.logs import configure_logging

    _prepare_sqlite_dir(settings)
    configure_logging(settings.log_level, json_output=settings.log_json)
    host = args.host or settings.http.host
    port = args.port if args.port is not None else settings.http.port
    log = logging.getLogger("somo.server")
    log.info("starting", extra={"host": host, "port": port, "database": settings.database.backend})
    app = create_app(settings)
    freeze_heap_after_startup(app)
    web.run_app(
        app,
        host=host,
        port=port,
        access_log=None,
        print=lambda _banner: log.info("listening", extra={"url": f"http://{host}:{port}"}),
    )


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> None:
    from server.migrate import upgrade

    try:
        settings.database.ensure_sqlite_dir()
        upgrade(settings.database.url, args.revision)
    except Exception as exc:
        mapped = _database_error(exc, settings.database.url)
        if mapped is None:
            raise
        raise mapped from None
    print(f"database at {_safe_url(settings.database.url)} is at revision {args.revision}")


async def _with_session(settings: Settings, work: Callable[..., Coroutine[Any, Any, None]]) -> None:
    from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
    from lms_domain.clock import SystemClock
    from lms_domain.db import create_engine, make_sessionmaker

    _prepare_sqlite_dir(settings)
    engine = create_engine(settings.database.url)
    install_change_capture()
    clock = SystemClock()
    makers = make_sessionmaker(engine, SyncContext(node_id=settings.sync.node_id, role=NodeRole.CENTRAL, clock=clock))
    try:
        async with makers() as session, session.begin():
            await work(session, clock)
    finally:
        await engine.dispose()


def cmd_create_admin(args: argparse.Namespace, settings: Settings) -> None:
    import sqlalchemy as sa

    from lms_domain.errors import NotFound
    from lms_domain.tenancy.models import Institution, Role
    from lms_domain.tenancy.service import create_user

    password = args.password or os.environ.get("SOMO_ADMIN_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise CliError("no password: pass --password or set SOMO_ADMIN_PASSWORD", EXIT_USAGE)
        password = getpass.getpass("Password for the new admin: ")

    async def work(session: Any, _clock: Any) -> None:
        institution_id = None
        role = Role.PLATFORM_ADMIN
        if args.institution:
            institution_id = await session.scalar(
                sa.select(Institution.id).where(Institution.code == args.institution.strip().upper())
            )
            if institution_id is None:
                raise NotFound(f"no institution has the code {args.institution}")
            role = Role.INSTITUTION_ADMIN
        await create_user(
            session=session,
            username=args.username,
            password=password,
            role=role,
            institution_id=institution_id,
            full_name=args.full_name,
        )

    _run(lambda: _with_session(settings, work), settings)
    print(f"created {args.username}")


def cmd_seed(args: argparse.Namespace, settings: Settings) -> None:
    from rich.console import Console

    from lms_domain.security import DEFAULT_HASHER
    from server.seed import clear_demo, seed_demo

    if settings.environment == "production":
        raise CliError("refusing to load demo data with SOMO_ENVIRONMENT=production", EXIT_USAGE)
    console = Console(stderr=True, highlight=False)

    async def work(session: Any, clock: Any) -> None:
        if args.clear:
            await clear_demo(session=session)
            console.print("[yellow]cleared[/] the demo data")
        await seed_demo(
            session=session,
            clock=clock,
            simulator_url=settings.payments.simulator_url,
            hasher=DEFAULT_HASHER,
            report=lambda msg: console.print(f"[green]✓[/] {msg}"),
        )

    _run(lambda: _with_session(settings, work), settings)
    console.print("demo data is loaded")


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> None:
    from aiohttp import web
    from yarl import URL

    from server.logs import configure_logging
    from server.simulators.acs import AcsSimConfig, add_acs_routes
    from server.simulators.africastalking import AtSimConfig, add_at_routes
    from server.simulators.airtel import AirtelSimConfig, add_airtel_routes
    from server.simulators.daraja import SANDBOX_SHORTCODE, DarajaSimConfig, create_daraja_app

    if settings.environment == "production":
        raise CliError("refusing to run the provider simulators with SOMO_ENVIRONMENT=production", EXIT_USAGE)
    if not 0.0 <= args.sms_duplicate_reports <= 1.0:
        raise CliError("--sms-duplicate-reports is a chance between 0 and 1", EXIT_USAGE)
    configure_logging(settings.log_level, json_output=settings.log_json)
    payments = settings.payments
    port = args.port if args.port is not None else URL(payments.simulator_url).port or 8090
    public = settings.http.public_url.rstrip("/")
    secret = payments.callback_secret.get_secret_value()
    config = DarajaSimConfig(
        credentials={payments.mpesa_consumer_key.get_secret_value(): payments.mpesa_consumer_secret.get_secret_value()},
        passkeys={SANDBOX_SHORTCODE: payments.mpesa_passkey.get_secret_value()},
        seed=args.seed,
    )
    app = create_daraja_app(config)
    # Airtel's callback URL is a portal setting, so the simulator is told it here, once.
    add_airtel_routes(
        app,
        AirtelSimConfig(
            credentials={
                payments.airtel_client_id.get_secret_value(): payments.airtel_client_secret.get_secret_value()
            },
            callback_url=f"{public}/callbacks/airtel/{secret}",
            callback_auth=True,
            callback_secret=payments.airtel_callback_hash_secret.get_secret_value(),
            seed=args.seed,
        ),
    )
    # AT's callback URLs are dashboard settings too; a server that is down or answers non-2xx is
    # logged and recorded by the simulator (GET /sim/at/deliveries), never fatal.
    notifications = settings.notifications
    add_at_routes(
        app,
        AtSimConfig(
            username=notifications.at_username,
            api_key=notifications.at_api_key.get_secret_value(),
            sender_ids=tuple(sender for sender in (notifications.sms_sender_id, notifications.sms_shortcode) if sender),
            delivery_report_url=f"{public}/sms/africastalking/delivery",
            inbound_url=f"{public}/sms/africastalking/inbound",
            duplicate_reports=args.sms_duplicate_reports,
            duplicate_inbound=args.sms_duplicate_reports,
            shortcode=notifications.sms_shortcode,
            seed=args.seed,
        ),
    )
    # Azure Communication Services (SMS and email), signed with the development key.
    add_acs_routes(
        app,
        AcsSimConfig(
            from_numbers=(notifications.acs_sms_from,),
            sender_addresses=(notifications.sender_email,),
            seed=args.seed,
        ),
    )
    log = logging.getLogger("somo.simulate")
    web.run_app(
        app,
        host=args.host,
        port=port,
        access_log=None,
        print=lambda _banner: log.info(
            "provider simulators (Daraja, Airtel, Africa's Talking, Azure Communication Services) listening",
            extra={"url": f"http://{args.host}:{port}"},
        ),
    )


def cmd_register_c2b(args: argparse.Namespace, settings: Settings) -> None:
    from server.paybills import register_paybills

    async def work() -> None:
        done = await register_paybills(settings, shortcode=args.shortcode)
        if not done:
            print("no active paybill account to register", file=sys.stderr)
        for registration in done:
            print(f"{registration.shortcode}: {registration.outcome}")

    _run(work, settings)


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> None:
    from server.reconcile import EXIT_DISCREPANCIES, StatementUnavailable, reconcile_command

    runs: list[Any] = []

    async def work() -> None:
        runs.append(
            await reconcile_command(
                settings, day=args.date, statements=args.statement, heal=not args.dry_run, as_json=args.json
            )
        )

    try:
        _run(work, settings)
    except StatementUnavailable as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    still_open = len(runs[0].report.open)
    if still_open:
        raise CliError(f"{still_open} discrepancies remain for a person to resolve", EXIT_DISCREPANCIES)


def cmd_ussd(args: argparse.Namespace, settings: Settings) -> None:
    import aiohttp

    from lms_domain.errors import InvalidInput
    from ussd.terminal import run_terminal

    url = args.url or settings.http.public_url.rstrip("/") + "/ussd/africastalking"
    try:
        asyncio.run(
            run_terminal(
                url=url,
                phone=args.phone,
                service_code=args.service_code or settings.ussd.service_code,
                network_code=args.network,
            )
        )
    except InvalidInput as exc:
        raise CliError(exc.detail, EXIT_USAGE) from None
    except aiohttp.ClientError as exc:
        raise CliError(f"cannot reach {url}: {exc} (is `make run` running?)", EXIT_USAGE) from None


def cmd_worker(args: argparse.Namespace, settings: Settings) -> None:
    from server.logs import configure_logging
    from server.worker import run_worker

    _prepare_sqlite_dir(settings)
    configure_logging(settings.log_level, json_output=settings.log_json)
    _run(lambda: run_worker(settings), settings)


def cmd_jobs(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from server.jobs import JOBS

    if args.jobs_command == "list":
        width = max(len(name) for name in JOBS)
        for job in JOBS.values():
            print(f"{job.name:<{width}}  {job.schedule}")
        return
    if args.name not in JOBS:
        raise CliError(f"no job called {args.name!r}; there are: {', '.join(JOBS)}", EXIT_USAGE)
    from server.logs import configure_logging
    from server.worker import run_job_now

    _prepare_sqlite_dir(settings)
    configure_logging(settings.log_level, json_output=settings.log_json)
    results: list[Any] = []

    async def work() -> None:
        results.append(await run_job_now(settings, args.name))

    _run(work, settings)
    if results[0] is None:
        print(f"{args.name}: skipped, another process is running it")
    else:
        print(f"{args.name}: {json.dumps(results[0], default=str)}")


def cmd_edge(args: argparse.Namespace, settings: Settings) -> None:
    raise CliError("run it through the somo script: somo edge --help", EXIT_USAGE)


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], None]] = {
    "serve": cmd_serve,
    "migrate": cmd_migrate,
    "create-admin": cmd_create_admin,
    "seed": cmd_seed,
    "simulate": cmd_simulate,
    "register-c2b": cmd_register_c2b,
    "reconcile": cmd_reconcile,
    "ussd": cmd_ussd,
    "worker": cmd_worker,
    "jobs": cmd_jobs,
    "edge": cmd_edge,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        COMMANDS[args.command](args, settings)
    except CliError as exc:
        print(f"somo {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
