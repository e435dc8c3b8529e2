"""How long a full garbage collection stops a started Somo server, with and without the
start-up heap frozen (``server.heap``): ``python -m bench.gc_pause``.

It builds the central app on a fresh SQLite database, runs its start-up (every context:
engine, projections, gateways, notifiers) and serves a few requests, as ``somo serve`` would
have by then. It then times ``gc.collect()`` several times (the median is the pause a full
collection costs every request in flight), freezes the heap as ``somo serve`` does, serves
200 more requests and times the full collection again. Baseline, same run:
a bare ``aiohttp`` app in a fresh interpreter, the least a server can hold.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer


def full_collections(rounds: int) -> dict[str, float]:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}


async def somo(rounds: int) -> dict[str, Any]:
    from server.app import create_app
    from server.heap import freeze_heap
    from server.migrate import upgrade
    from server.settings import DatabaseSettings, SchedulerSettings, Settings

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'gc.db'}"
        await asyncio.to_thread(upgrade, url)
        settings = Settings(
            database=DatabaseSettings(url=url), scheduler=SchedulerSettings(enabled=False), log_level="WARNING"
        )
        app = create_app(settings)
        async with TestServer(app) as server, aiohttp.ClientSession() as http:

            async def requests(times: int) -> None:
                for _ in range(times):
                    for path in ("/health", "/api/v1/openapi.json", "/api/v1/courses", "/verify/NOPE"):
                        async with http.get(server.make_url(path)) as response:
                            await response.read()

            await requests(5)
            before = {"tracked_objects": len(gc.get_objects()), **full_collections(rounds)}
            freeze_heap()
            await requests(50)  # what serving leaves tracked after the freeze
            after = {"tracked_objects": len(gc.get_objects()), **full_collections(rounds)}
    return {"not frozen": before, "frozen": after}


BARE = """
import gc, json, statistics, time
from aiohttp import web
app = web.Application()
times = []
for _ in range({rounds}):
    t0 = time.perf_counter(); gc.collect(); times.append((time.perf_counter() - t0) * 1000)
print(json.dumps({{"tracked_objects": len(gc.get_objects()), "median_ms": round(statistics.median(times), 2),
                  "max_ms": round(max(times), 2)}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    bare = json.loads(subprocess.check_output([sys.executable, "-c", BARE.format(rounds=args.rounds)], text=True))
    result = {"bare aiohttp (baseline)": bare, **asyncio.run(somo(args.rounds))}
    width = max(len(name) for name in result)
    print(f"{'full gc.collect()':<{width}}  {'tracked objects':>15}  {'median ms':>9}  {'max ms':>7}")
    for name, row in result.items():
        print(f"{name:<{width}}  {row['tracked_objects']:>15,}  {row['median_ms']:>9.2f}  {row['max_ms']:>7.2f}")


if __name__ == "__main__":
    main()
