"""What the sync endpoints refuse, and what a refusal leaves behind: nothing.

Replays are acknowledged without a second write; out-of-scope rows are rejected one by one
and logged; malformed or truncated batches get a 4xx and change nothing; a revoked node is
refused on its next request; a restored database is caught before it can lose changes.
"""

from __future__ import annotations

import gzip
import shutil
import sqlite3
import uuid
from contextlib import closing
from typing import Any

import pytest
import sqlalchemy as sa

from edge_node.node import open_node
from lms_domain.changefeed.models import OutboxEntry, SyncRejection
from lms_domain.courses.models import Enrollment, LessonProgress
from lms_domain.learning import service as learning
from lms_domain.learning.schemas import ProgressUpdate
from lms_domain.platform.models import EdgeNode
from lms_domain.tenancy.models import Learner
from sync import outbox
from sync.client import SyncError
from sync.codec import compress, dumps, encode_value
from sync.protocol import protocol_headers
from tests.sync.conftest import Central, Edge, EdgeFactory


async def _progress(edge: Edge, learner: Learner, lesson_id: uuid.UUID, percent: int) -> None:
    """Progress in the school's course, enrolling first if need be (as the learner would)."""
    course_id = edge.central.a.course.course.id
    async with edge.node.db.write() as session, session.begin():
        enrolled = await session.scalar(
            sa.select(Enrollment.id).where(Enrollment.learner_id == learner.id, Enrollment.course_id == course_id)
        )
        if enrolled is None:
            await learning.enroll(
                session=session, actor=edge.actor, course_id=course_id, learner_id=learner.id, clock=edge.clock
            )
        await learning.record_progress(
            session=session,
            actor=edge.actor,
            lesson_id=lesson_id,
            data=ProgressUpdate(learner_id=learner.id, percent=percent),
            clock=edge.clock,
        )


async def _central_feed_size(central: Central) -> int:
    return int(await central.scalar(sa.select(sa.func.count()).select_from(OutboxEntry)))


async def test_a_replayed_batch_is_acknowledged_again_and_writes_nothing(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    await _progress(edge, central.a.learners[0], central.a.course.lessons[0].id, 40)
    async with edge.node.db.write() as session, session.begin():
        batch = await outbox.next_batch(
            session,
            node_id=edge.node.identity.node_id,
            feed=str(edge.node.identity.institution_id),
            epoch=0,
            max_rows=100,
            max_bytes=10**6,
        )
    assert batch is not None

    first = await edge.client.push(batch.document)
    feed_after_first = await _central_feed_size(central)
    again = [await edge.client.push(batch.document) for _ in range(3)]  # the answer was lost, thrice

    assert first["applied"] == 2  # the enrollment and the progress
    assert all(a == {"acked": batch.to_seq, "replayed": True} for a in again)
    assert await _central_feed_size(central) == feed_after_first


async def test_the_same_rows_in_a_new_batch_change_nothing(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    await _progress(edge, central.a.learners[0], central.a.course.lessons[0].id, 40)
    async with edge.node.db.write() as session, session.begin():
        batch = await outbox.next_batch(
            session,
            node_id=edge.node.identity.node_id,
            feed=str(edge.node.identity.institution_id),
            epoch=0,
            max_rows=100,
            max_bytes=10**6,
        )
    assert batch is not None
    await edge.client.push(batch.document)
    feed = await _central_feed_size(central)
    later = {**batch.document, "from_seq": batch.to_seq + 1, "to_seq": batch.to_seq + 1, "digest": "x" * 64}

    answer = await edge.client.push(later)

    assert (answer["applied"], answer["unchanged"]) == (0, 2)
    assert await _central_feed_size(central) == feed, "an unchanged row takes no new place in the feed"


async def test_rows_out_of_the_nodes_scope_are_rejected_one_by_one_and_logged(
    central: Central, make_edge: EdgeFactory
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    node_id = edge.node.identity.node_id
    other = central.b.learners[0]
    mine = central.a.learners[0]
    columns = ["id", "institution_id", "learner_id", "course_id", "status", "enrolled_at", "hlc", "origin_node_id"]

    def enrollment(institution: uuid.UUID, learner: uuid.UUID, course: uuid.UUID) -> list[Any]:
        values = [uuid.uuid4(), institution, learner, course, "active", central.clock.now(), 10**15, node_id]
        return [encode_value(v) for v in values]

    document = {
        "epoch": 0,
        "from_seq": 1,
        "to_seq": 3,
        "digest": "d" * 64,
        "acked": 0,
        "tables": [
            {
                "t": "enrollments",
                "c": columns,
                "r": [
                    # another school's row
                    enrollment(central.b.institution.id, other.id, central.b.course.course.id),
                    # my school's id on it, but naming another school's learner
                    enrollment(central.a.institution.id, other.id, central.catalogue.course.id),
                    # fine
                    enrollment(central.a.institution.id, mine.id, central.catalogue.course.id),
                ],
            },
            {"t": "subscriptions", "c": ["id", "institution_id", "hlc", "origin_node_id"], "r": []},
        ],
    }

    answer = await edge.client.push(document)

    assert answer["applied"] == 1
    assert [r["reason"] for r in answer["rejected"]] == ["out_of_scope", "out_of_scope"]
    assert await central.scalar(sa.select(sa.func.count()).select_from(SyncRejection)) == 2
    assert await central.scalar(sa.select(sa.func.count()).where(Enrollment.learner_id == other.id)) == 0


async def test_a_node_may_not_push_money_or_catalogue_state(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    row = [encode_value(v) for v in (uuid.uuid4(), central.a.institution.id, 10**15, edge.node.identity.node_id)]
    document = {
        "epoch": 0,
        "from_seq": 1,
        "to_seq": 1,
        "digest": "e" * 64,
        "acked": 0,
        "tables": [{"t": "entitlements", "c": ["id", "institution_id", "hlc", "origin_node_id"], "r": [row]}],
    }

    answer = await edge.client.push(document)

    assert [r["reason"] for r in answer["rejected"]] == ["table_not_writable"]


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda doc: {**doc, "tables": "nope"}, "malformed_batch"),
        (lambda doc: {**doc, "tables": [{"t": "payments", "c": ["id"], "r": []}]}, "unknown_table"),
        (lambda doc: {**doc, "tables": [{**doc["tables"][0], "c": ["id", "pin_hash"]}]}, "malformed_batch"),
        (lambda doc: {**doc, "tables": [{**doc["tables"][0], "r": [["not-a-uuid"]]}]}, "malformed_batch"),
        (lambda doc: {**doc, "to_seq": "7"}, "malformed_batch"),
        (  # the same row twice: one statement cannot merge it twice
            lambda doc: {
                **doc,
                "tables": [{**doc["tables"][0], "r": doc["tables"][0]["r"] * 2, "b": doc["tables"][0]["b"] * 2}],
            },
            "malformed_batch",
        ),
    ],
)
async def test_a_malformed_batch_gets_a_4xx_and_changes_nothing(
    central: Central, make_edge: EdgeFactory, mangle: Any, code: str
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    await _progress(edge, central.a.learners[0], central.a.course.lessons[0].id, 40)
    async with edge.node.db.write() as session, session.begin():
        batch = await outbox.next_batch(
            session,
            node_id=edge.node.identity.node_id,
            feed=str(edge.node.identity.institution_id),
            epoch=0,
            max_rows=100,
            max_bytes=10**6,
        )
    assert batch is not None
    document = batch.document
    document["tables"] = [t for t in document["tables"] if t["t"] == "lesson_progress"]
    feed = await _central_feed_size(central)

    with pytest.raises(SyncError) as refused:
        await edge.client.push(mangle(document))

    assert 400 <= refused.value.status < 500 and refused.value.code == code
    assert await _central_feed_size(central) == feed
    assert await central.scalar(sa.select(sa.func.count()).select_from(LessonProgress)) == 0


async def test_a_truncated_body_gets_a_4xx(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    token = await edge.client.token()
    body = compress(dumps({"epoch": 0, "from_seq": 1, "to_seq": 1, "digest": "", "tables": []}))
    headers = {**protocol_headers(), "Authorization": f"Bearer {token}", "Content-Encoding": "gzip"}
    for broken in (body[: len(body) // 2], b"not gzip at all", gzip.compress(b"{not json")):
        async with edge.http.post(central.url + "/sync/v1/push", data=broken, headers=headers) as response:
            assert 400 <= response.status < 500, (broken, await response.text())
            assert response.content_type == "application/problem+json"


async def test_a_request_without_the_protocol_version_is_refused(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    token = await edge.client.token()
    async with edge.http.get(central.url + "/sync/v1/pull", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 422
        assert (await response.json())["code"] == "protocol_unsupported"


async def test_a_revoked_node_is_refused_on_its_next_request(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    await edge.sync()  # it holds a valid 15-minute token now
    admin = await central.token(central.a.admin_login)
    status, _ = await central.api("DELETE", f"/api/v1/edge-nodes/{edge.node.identity.node_id}", admin)
    assert status == 204

    with pytest.raises(SyncError) as refused:
        await edge.sync()

    assert (refused.value.status, refused.value.code) == (403, "node_revoked")


async def test_another_schools_admin_cannot_see_or_revoke_a_node(central: Central, make_edge: EdgeFactory) -> None:
    edge = await make_edge(central.a)
    stranger = await central.token(central.b.admin_login)
    node = edge.node.identity.node_id

    assert (await central.api("GET", f"/api/v1/edge-nodes/{node}", stranger))[0] == 404
    assert (await central.api("DELETE", f"/api/v1/edge-nodes/{node}", stranger))[0] == 404
    assert (await central.api("GET", "/api/v1/edge-nodes", stranger))[1]["items"] == []
    assert await central.scalar(sa.select(EdgeNode.status).where(EdgeNode.id == node)) == "active"


async def test_an_enrollment_code_works_once(central: Central, make_edge: EdgeFactory) -> None:
    _, code = await central.register_node(central.a)
    from sync.client import SyncClient

    client = SyncClient(central.http, central.url)
    await client.enroll(code, "A" * 43 + "=")
    with pytest.raises(SyncError) as again:
        await client.enroll(code, "A" * 43 + "=")
    assert (again.value.status, again.value.code) == (401, "invalid_enrollment_code")


async def test_a_restored_database_is_caught_and_loses_nothing(
    central: Central, make_edge: EdgeFactory, tmp_path: Any
) -> None:
    edge = await make_edge(central.a)
    await edge.sync()
    files = edge.node.files
    backup = tmp_path / "backup.db"
    _backup(files.database, backup)  # last night's backup
    await _progress(edge, central.a.learners[0], central.a.course.lessons[0].id, 30)
    await edge.sync()  # seq 1.. acknowledged for this change
    await edge.node.engine.dispose()
    await edge.node.db.apply.kw["bind"].dispose()
    shutil.copyfile(backup, files.database)  # the disk died; the backup is restored
    for suffix in ("-wal", "-shm"):
        (files.database.parent / (files.database.name + suffix)).unlink(missing_ok=True)

    async with open_node(files, clock=edge.clock) as restored:
        again = Edge(restored, central, edge.http, edge.clock)
        await _progress(again, central.a.learners[1], central.a.course.lessons[0].id, 70)  # reuses seq 1
        report = await again.sync()

    assert report.new_epoch == 1
    assert await central.scalar(sa.select(EdgeNode.epoch).where(EdgeNode.id == edge.node.identity.node_id)) == 1
    percents = {
        row.learner_id: row.percent
        for row in (await _rows(central, sa.select(LessonProgress.learner_id, LessonProgress.percent)))
    }
    assert percents == {central.a.learners[0].id: 30, central.a.learners[1].id: 70}


def _backup(source: Any, target: Any) -> None:
    """SQLite's online backup (a plain file copy would miss what is still in the WAL)."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


async def _rows(central: Central, stmt: Any) -> list[Any]:
    async with central.makers() as session:
        return list((await session.execute(stmt)).all())
