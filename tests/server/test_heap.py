"""The serving process freezes its start-up heap, so a full collection no longer walks it.

Run in a child interpreter: a frozen heap is never collected again, which the test process
(building hundreds of apps) must not suffer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = """
import asyncio, gc, json, sys
from aiohttp.test_utils import TestServer
from server.app import create_app
from server.heap import freeze_heap_after_startup
from server.migrate import upgrade
from server.settings import DatabaseSettings, SchedulerSettings, Settings

url = sys.argv[1]
upgrade(url)
app = create_app(Settings(database=DatabaseSettings(url=url), scheduler=SchedulerSettings(enabled=False)))
if sys.argv[2] == "freeze":
    freeze_heap_after_startup(app)

async def main():
    async with TestServer(app):
        return {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}

print(json.dumps(asyncio.run(main())))
"""


def started(tmp_path: Path, mode: str) -> dict[str, int]:
    url = f"sqlite+aiosqlite:///{tmp_path / f'{mode}.db'}"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, url, mode], capture_output=True, text=True, timeout=120, check=True
    )
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_started_server_leaves_its_start_up_objects_out_of_the_collectors_walk(tmp_path: Path) -> None:
    plain = started(tmp_path, "plain")
    frozen = started(tmp_path, "freeze")

    assert plain["frozen"] == 0
    assert frozen["frozen"] > plain["tracked"] // 2  # what start-up made is frozen...
    assert frozen["tracked"] < plain["tracked"] // 10  # ...so a full collection walks a small rest
