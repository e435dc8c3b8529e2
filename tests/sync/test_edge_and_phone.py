"""The school's node as its users meet it (the learning API on the LAN, its status page, its
CLI, lesson files by checksum) and the phone app's sync, scoped to one learner."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient

from edge_node.app import create_edge_app
from edge_node.node import edge_settings
from lms_domain.changefeed.models import SyncRejection
from lms_domain.courses.models import Asset, AssetKind, Enrollment
from server.settings import Settings
from sync.client import SyncClient
from sync.codec import encode_value
from sync.http import device_node_id
from sync.protocol import Cursor
from tests.sync.conftest import PASSWORD, Central, Edge, EdgeFactory

pytestmark = pytest.mark.backend_only("sqlite")  # the central backend is not what these test


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


async def somo(*args: str, stdin: str = "") -> Ran:
    """The real CLI in a child process; asynchronously, so this loop keeps serving the central."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_node.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SOMO_LOG_JSON": "false"},
    )
    out, err = await asyncio.wait_for(child.communicate(stdin.encode()), 120)
    return Ran(child.returncode or 0, out.decode(), err.decode())


async def edge_client(edge: Edge, aiohttp_client: Any) -> TestClient:
    base = Settings()
    settings = edge_settings(base, edge.node.files, edge.node.identity.node_id)
    settings = settings.model_copy(
        update={"edge": settings.edge.model_copy(update={"data_dir": edge.node.files.data_dir, "sync_interval_s": 0})}
    )
    client: TestClient = await aiohttp_client(create_edge_app(settings, clock=edge.clock))
    return client


async def test_a_learner_signs_in_at_the_school_with_a_password_set_there_and_only_there(
    central: Central, make_edge: EdgeFactory, aiohttp_client: Any
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    data_dir = str(edge.node.files.data_dir)
    login = central.a.learner_login

    refused = await somo("edge", "--data-dir", data_dir, "set-password", login, "--password-stdin", stdin="short\n")
    done = await somo(
        "edge", "--data-dir", data_dir, "set-password", login, "--password-stdin", stdin="school-pass-1\n"
    )
    assert refused.returncode == 2 and "8 characters" in refused.stderr
    assert done.returncode == 0, done.stderr

    client = await edge_client(edge, aiohttp_client)
    central_password = await client.post("/api/v1/auth/token", json={"login": login, "password": PASSWORD})
    at_school = await client.post("/api/v1/auth/token", json={"login": login, "password": "school-pass-1"})
    assert central_password.status == 401, "the central password is never on the node"
    assert at_school.status == 200
    school_token = (await at_school.json())["access_token"]

    enrolled = await client.post(
        "/api/v1/enrollments",
        json={"course_id": str(central.catalogue.course.id)},
        headers={"Authorization": f"Bearer {school_token}", "Idempotency-Key": "k1"},
    )
    assert enrolled.status == 201, await enrolled.text()
    status = await (await client.get("/sync/status")).json()
    assert status["pending_changes"] == 1 and status["node_id"] == str(edge.node.identity.node_id)

    # The node's login is worthless anywhere else, and a central login is worthless here.
    assert (await central.api("GET", "/api/v1/enrollments", school_token))[0] == 401
    central_token = await central.token(login)
    listed = await client.get("/api/v1/enrollments", headers={"Authorization": f"Bearer {central_token}"})
    assert listed.status == 401

    await edge.sync()
    assert (
        await central.scalar(sa.select(sa.func.count()).where(Enrollment.course_id == central.catalogue.course.id)) == 1
    )


async def test_the_cli_syncs_and_reports(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    data_dir = str(edge.node.files.data_dir)

    synced = await somo("edge", "--data-dir", data_dir, "sync")
    status = await somo("edge", "--data-dir", data_dir, "status", "--json")

    assert synced.returncode == 0, synced.stderr
    assert "pulled" in synced.stdout
    report = json.loads(status.stdout)
    assert report["last_error"] is None and report["pending_changes"] == 0
    assert report["last_report"]["pulled_rows"] > 0
    missing = await somo("edge", "--data-dir", data_dir + "-nowhere", "status")
    assert missing.returncode != 0 and "somo edge init" in missing.stderr


async def test_lesson_files_are_cached_by_checksum_and_a_cut_download_resumes(
    central: Central, make_edge: EdgeFactory
) -> None:
    content = os.urandom(300_000)
    sha = hashlib.sha256(content).hexdigest()
    (central.asset_dir / "videos").mkdir()
    (central.asset_dir / "videos" / "cells.mp4").write_bytes(content)
    async with central.makers() as session, session.begin():
        session.add(
            Asset(
                lesson_id=central.catalogue.lessons[0].id,
                institution_id=None,
                kind=AssetKind.VIDEO,
                file_path="videos/cells.mp4",
                checksum_sha256=sha,
                size_bytes=len(content),
            )
        )
    edge = await make_edge(central.a)
    target = edge.node.files.assets / sha
    target.parent.mkdir(parents=True)
    (target.parent / (sha + ".part")).write_bytes(content[:100_000])  # a download cut short earlier

    before = edge.client.traffic.bytes_down
    report = await edge.sync(asset_dir=edge.node.files.assets)

    assert report.assets == 1
    assert target.read_bytes() == content
    assert edge.client.traffic.bytes_down - before < len(content) + 50_000, "only the rest was fetched"
    assert not await edge.client.download_asset("0" * 64, edge.node.files.assets / ("0" * 64))


async def test_a_phone_syncs_its_learners_rows_and_nothing_else(central: Central) -> None:
    token = await central.token(central.a.learner_login)
    me = central.a.learners[0]
    phone = SyncClient(central.http, central.url, bearer=token)
    tables: dict[str, set[str]] = {}
    cursor = Cursor()
    while True:
        document = await phone.pull(cursor, 500)
        for chunk in document["tables"]:
            tables.setdefault(chunk["t"], set()).update(row[chunk["c"].index("id")] for row in chunk["r"])
        cursor = Cursor.parse(document["cursor"])
        if not document["more"]:
            break

    assert tables["learners"] == {me.id.hex}
    assert "users" not in tables
    assert tables["institutions"] == {central.a.institution.id.hex}
    assert central.catalogue.course.id.hex in tables["courses"]
    assert central.b.course.course.id.hex not in tables["courses"]

    device = device_node_id(me.id)
    columns = ["id", "institution_id", "learner_id", "course_id", "status", "enrolled_at", "hlc", "origin_node_id"]

    def enrollment(learner: uuid.UUID) -> list[Any]:
        values = [uuid.uuid4(), central.a.institution.id, learner, central.catalogue.course.id, "active"]
        return [encode_value(v) for v in (*values, central.clock.now(), 10**15, device)]

    answer = await phone.push(
        {
            "epoch": 0,
            "from_seq": 1,
            "to_seq": 2,
            "digest": "",
            "tables": [
                {"t": "enrollments", "c": columns, "r": [enrollment(me.id), enrollment(central.a.learners[1].id)]}
            ],
        }
    )

    assert answer["applied"] == 1 and [r["reason"] for r in answer["rejected"]] == ["out_of_scope"]
    assert await central.scalar(sa.select(sa.func.count()).select_from(SyncRejection)) == 1
