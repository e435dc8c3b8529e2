"""One "scheduler process" for the two-process test: waits for a shared start instant, then
advances every dunning candidate straight through the domain (no job lock, so only the
database's guarantees stand between two processes), in an order shuffled by ``SEED`` so two
processes collide on rows rather than one trailing the other, and prints its summary as JSON.

    python -m tests.subscriptions.race_worker DATABASE_URL AT_ISO START_EPOCH ROUNDS SEED
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from datetime import datetime

import lms_domain.models  # noqa: F401 - every table mapped
from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.clock import FixedClock
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.subscriptions.dunning import DEFAULT_SCHEDULE, advance, dunning_candidates
from server.settings import CENTRAL_NODE_ID


async def main(url: str, at: datetime, start: float, rounds: int, seed: int) -> dict[str, int]:
    engine = create_engine(url)
    install_change_capture()
    clock = FixedClock(at)
    sessions = make_sessionmaker(engine, SyncContext(node_id=CENTRAL_NODE_ID, role=NodeRole.CENTRAL, clock=clock))
    async with engine.connect():  # connected before the start line, so both start at once
        pass
    await asyncio.sleep(max(0.0, start - time.time()))
    totals: dict[str, int] = {}
    try:
        async with sessions() as session:
            candidates = list((await session.execute(dunning_candidates(clock.now()))).scalars())
        random.Random(seed).shuffle(candidates)
        for _ in range(rounds):
            for subscription_id in candidates:
                async with sessions() as session, session.begin():
                    action = await advance(session, subscription_id, schedule=DEFAULT_SCHEDULE, now=at)
                totals[action] = totals.get(action, 0) + 1
    finally:
        await engine.dispose()
    return totals


if __name__ == "__main__":
    url, at, start = sys.argv[1], datetime.fromisoformat(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(main(url, at, start, int(sys.argv[4]), int(sys.argv[5])))))
