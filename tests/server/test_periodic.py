"""The interval loop behind the payment poller and the SMS notifier."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from server.periodic import periodic_ctx

task_key = web.AppKey("test_periodic_task", asyncio.Task[None])


async def test_work_repeats_survives_a_failed_pass_and_stops_with_the_app() -> None:
    passes: list[int] = []

    async def work(app: web.Application) -> None:
        passes.append(len(passes))
        if len(passes) == 2:
            raise RuntimeError("a bad pass")

    ctx = periodic_ctx(name="test", key=task_key, interval_s=lambda app: 0.01, work=work, log=logging.getLogger("test"))
    app = web.Application()
    running = ctx(app)
    await running.__anext__()
    await asyncio.sleep(0.2)
    assert len(passes) >= 4  # the failed second pass did not stop the loop
    await anext(running, None)
    assert app[task_key].done()
    count = len(passes)
    await asyncio.sleep(0.05)
    assert len(passes) == count


async def test_an_interval_of_zero_runs_nothing() -> None:
    async def work(app: web.Application) -> None:
        raise AssertionError("must not run")

    ctx = periodic_ctx(name="off", key=task_key, interval_s=lambda app: 0, work=work, log=logging.getLogger("t"))
    app = web.Application()
    running = ctx(app)
    await running.__anext__()
    await asyncio.sleep(0.02)
    assert task_key not in app
    await anext(running, None)
