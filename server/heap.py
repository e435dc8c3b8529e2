"""Garbage collection for a long-running server process.

CPython's full (oldest-generation) collection walks every tracked object. A started server
holds a few hundred thousand that live as long as the process (modules, mappers, compiled
schemas, pools), so each full collection paused the event loop for about 140 ms on a 2-vCPU
machine, and every request in flight waited: it was the slowest hop of the USSD benchmark's
60-second window. Freezing the heap once the app has started moves those objects out of the
collector's sight (``gc.freeze``); later collections walk only what requests allocated.
Reference cycles made after start-up are still collected.
"""

from __future__ import annotations

import gc
import logging

from aiohttp import web

log = logging.getLogger("somo.server")


def freeze_heap() -> int:
    """Collect what start-up left behind, then freeze the rest; how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


async def _freeze(_app: web.Application) -> None:
    log.info("startup heap frozen", extra={"objects": freeze_heap()})


def freeze_heap_after_startup(app: web.Application) -> None:
    """For the process that serves ``app`` (``somo serve``, the edge node), not for tests that
    build many apps in one process: a frozen heap is never collected again."""
    app.on_startup.append(_freeze)
