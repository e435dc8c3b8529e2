"""``somo edge ...``: set up, run, sync and inspect a school's node.

The ``somo`` script enters here: ``edge`` commands are handled in this package (which
builds on the server's), everything else goes to ``server.cli``, which must not import the
edge (the dependency runs one way).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

from lms_domain.errors import DomainError
from server import cli as server_cli
from server.cli import EXIT_DOMAIN, EXIT_USAGE, CliError, load_settings
from server.settings import Settings
from sync.client import SyncError

EXIT_SYNC = 6


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="somo edge", description="A school's edge node: learning on the LAN, offline."
    )
    parser.add_argument("--data-dir", type=Path, help="the node's folder (default SOMO_EDGE__DATA_DIR or var/edge)")
    sub = parser.add_subparsers(dest="edge_command", required=True, metavar="COMMAND")
    init = sub.add_parser("init", help="create the node's key and database and enroll it with a one-time code")
    init.add_argument("--central", required=True, help="the central server, e.g. https://somo.example.ke")
    init.add_argument("--code", required=True, help="the code from POST /api/v1/edge-nodes (or the admin console)")
    run = sub.add_parser("run", help="serve the learning API on the LAN and sync in the background")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    sub.add_parser("sync", help="sync now, with a progress bar")
    status = sub.add_parser("status", help="last sync, pending changes, conflicts and errors")
    status.add_argument("--json", action="store_true")
    password = sub.add_parser("set-password", help="set the password a user signs in with on this node only")
    password.add_argument("login", help="username")
    password.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    return parser


def _files(args: argparse.Namespace, settings: Settings) -> Any:
    from edge_node.node import NodeFiles

    return NodeFiles(args.data_dir or settings.edge.data_dir)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except DomainError as exc:
        raise CliError(exc.detail, EXIT_DOMAIN) from None
    except SyncError as exc:
        raise CliError(f"the central server refused: {exc.detail} ({exc.code})", EXIT_SYNC) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach the central server: {str(exc) or type(exc).__name__}", EXIT_SYNC) from None


def cmd_init(args: argparse.Namespace, settings: Settings) -> None:
    from edge_node.node import init_node

    files = _files(args, settings)
    identity = _run(init_node(files, central_url=args.central, code=args.code))
    print(f"enrolled node {identity.node_id} for institution {identity.institution_id}")
    print(f"data in {files.data_dir}; next: somo edge sync (first copy), then somo edge run")


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    from aiohttp import web

    from edge_node.app import create_edge_app
    from edge_node.node import edge_settings, open_node
    from server.heap import freeze_heap_after_startup
    from server.logs import configure_logging

    files = _files(args, settings)

    async def node_id() -> Any:
        async with open_node(files) as node:
            return node.identity.node_id

    local = edge_settings(settings, files, _run(node_id()))
    local = local.model_copy(update={"edge": local.edge.model_copy(update={"data_dir": files.data_dir})})
    configure_logging(settings.log_level, json_output=settings.log_json)
    app = create_edge_app(local)
    freeze_heap_after_startup(app)
    web.run_app(
        app,
        host=args.host or settings.edge.host,
        port=args.port or settings.edge.port,
        access_log=None,
    )


def cmd_sync(args: argparse.Namespace, settings: Settings) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edge_node.node import client_for, open_node
    from sync.runner import sync_once

    files = _files(args, settings)

    async def work() -> dict[str, Any]:
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False
        ) as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int | None) -> None:
                if stage not in tasks:
                    label = "pushing changes" if stage == "push" else "pulling rows"
                    tasks[stage] = bar.add_task(label, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            async with open_node(files) as node, aiohttp.ClientSession() as http:
                client = client_for(node, http, timeout_s=settings.edge.request_timeout_s)
                report = await sync_once(
                    node.db,
                    client,
                    batch_rows=settings.sync.batch_rows,
                    batch_bytes=settings.sync.batch_bytes,
                    asset_dir=files.assets,
                    progress=progress,
                )
        return report.summary()

    summary = _run(work())
    print(
        f"pushed {summary['pushed_rows']} rows, pulled {summary['pulled_rows']} rows, "
        f"{summary['conflicts']} conflicts, {summary['rejected']} rejected, {summary['assets']} files, "
        f"{summary['requests']} requests, {summary['bytes_down']} bytes down in {summary['seconds']} s"
    )


def cmd_status(args: argparse.Namespace, settings: Settings) -> None:
    from edge_node.node import open_node
    from lms_domain.changefeed.models import SyncConflict
    from sync import outbox, state

    files = _files(args, settings)

    async def work() -> dict[str, Any]:
        async with open_node(files) as node, node.db.read() as session:
            status = await state.read(session, state.STATUS)
            return {
                **node.identity.dump(),
                "cursor": str(await state.cursor(session)),
                "pending_changes": await outbox.pending_count(session),
                "conflicts": int(await session.scalar(sa.select(sa.func.count()).select_from(SyncConflict)) or 0),
                "last_sync_at": status.get("last_sync_at"),
                "last_attempt_at": status.get("last_attempt_at"),
                "last_error": status.get("last_error"),
                "last_report": status.get("last_report"),
            }

    result = _run(work())
    if args.json:
        print(json.dumps(result, indent=2))
        return
    width = max(len(k) for k in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value if value is not None else '-'}")


def cmd_set_password(args: argparse.Namespace, settings: Settings) -> None:
    from edge_node.node import open_node
    from lms_domain.security import DEFAULT_HASHER
    from sync.policy import table

    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    if len(password) < 8:
        raise CliError("use at least 8 characters", EXIT_USAGE)
    files = _files(args, settings)

    async def work() -> None:
        async with open_node(files) as node, node.db.write() as session, session.begin():
            # A Core update: the hash is this node's own and must not enter its outbox.
            users = table("users")
            done = await session.execute(
                sa.update(users)
                .where(users.c.username == args.login)
                .values(password_hash=DEFAULT_HASHER.hash(password), failed_logins=0, locked_until=None)
            )
            if not getattr(done, "rowcount", 0):
                raise CliError(f"no user {args.login!r} on this node (has it synced?)", EXIT_USAGE)

    _run(work())
    print(f"{args.login} can now sign in on this node")


COMMANDS = {
    "init": cmd_init,
    "run": cmd_run,
    "sync": cmd_sync,
    "status": cmd_status,
    "set-password": cmd_set_password,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "edge":
        return server_cli.main(argv)
    args = build_parser().parse_args(argv[1:])
    try:
        settings = load_settings()
        COMMANDS[args.edge_command](args, settings)
    except CliError as exc:
        print(f"somo edge {args.edge_command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
