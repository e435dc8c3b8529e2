"""A renewal approved at a school's edge node: queued there, synced up, prompted once from the
central server (M-Pesa simulator), and its outcome synced back down to the school."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import sqlalchemy as sa
from pytest_aiohttp import AiohttpClient, AiohttpServer

from edge_node.node import NodeFiles, client_for, init_node, open_node
from lms_domain.access import Actor
from lms_domain.payments import queued_renewals
from lms_domain.payments.models import PaymentIntent
from lms_domain.platform import edge_nodes
from lms_domain.platform.edge_nodes import EdgeNodeIn
from lms_domain.subscriptions.models import QueuedRenewal, QueuedRenewalStatus
from lms_domain.tenancy.models import Learner, Role
from server.seed import sid
from sync.runner import sync_once
from tests.subscriptions.conftest import AMINA, AMINA_SUB, job, set_aside_zawadi
from tests.ussd.conftest import make_world


async def test_a_renewal_approved_at_school_is_prompted_once_from_the_central_server(
    database_url: str, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    world = await set_aside_zawadi(await make_world(database_url, aiohttp_server, aiohttp_client))
    institution = await world.scalar(sa.select(Learner.institution_id).where(Learner.id == AMINA))
    platform = Actor(user_id=None, role=Role.PLATFORM_ADMIN, institution_id=None)
    async with world.makers() as session, session.begin():
        registered = await edge_nodes.register(
            session=session,
            actor=platform,
            data=EdgeNodeIn(name="school", institution_id=institution),
            now=world.clock.now(),
        )
    files = NodeFiles(tmp_path / "edge")
    central_url = str(world.client.make_url("")).rstrip("/")
    await init_node(files, central_url=central_url, code=registered.enrollment_code)
    amina = Actor(user_id=sid("user", "amina"), role=Role.LEARNER, institution_id=institution, learner_id=AMINA)

    async with open_node(files, clock=world.clock) as node, aiohttp.ClientSession() as http:
        client = client_for(node, http)
        await sync_once(node.db, client)
        async with node.db.write() as session, session.begin():
            queued = await queued_renewals.queue_renewal(
                session=session,
                actor=amina,
                subscription_id=AMINA_SUB,
                phone=None,
                period_start=None,
                clock=node.db.clock,
            )
        assert await world.scalar(sa.select(sa.func.count()).select_from(PaymentIntent)) == 0, "no prompt offline"

        await sync_once(node.db, client)
        arrived = await world.scalar(sa.select(QueuedRenewal.status).where(QueuedRenewal.id == queued.id))
        first = await job(world, "queued-renewals")
        again = await job(world, "queued-renewals")
        await sync_once(node.db, client)

        async with node.db.read() as session:
            at_school = await session.get(QueuedRenewal, queued.id)

    assert arrived is QueuedRenewalStatus.QUEUED
    assert first["prompted"] == 1 and again == {"prompted": 0, "refused": 0, "failed": 0, "retrying": 0}
    intents = await world.scalar(
        sa.select(sa.func.count()).select_from(PaymentIntent).where(PaymentIntent.subscription_id == AMINA_SUB)
    )
    assert intents == 1, "exactly one prompt for one approval"
    assert at_school is not None and at_school.status is QueuedRenewalStatus.PROMPTED
    assert at_school.attempt_id is not None
