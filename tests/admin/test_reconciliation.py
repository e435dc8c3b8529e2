"""Console: reconciliation runs and the exceptions queue (filters, sorting, pages, CSV, resolve),
each school seeing only its own exceptions, in every page and export."""

from __future__ import annotations

import csv
import io
import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from lms_domain.payments.exceptions import ExceptionStatus, ReconciliationException, Resolution, record_run
from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import User
from tests.admin.conftest import Console
from tests.payments.test_reconciliation_queue import amount_mismatch, make_payment, report_of, unplaced


@dataclass
class Queue:
    run_id: uuid.UUID
    a: uuid.UUID  # school A's exception (receipt SKRA000001)
    b: uuid.UUID  # school B's (SKRB000001)
    nobody: uuid.UUID  # money no school is named for (SKRN000001)


async def _queue(console: Console) -> Queue:
    async with console.makers() as session, session.begin():
        pa = await make_payment(session, console.a.institution, "SKRA000001", 30_000)
        pb = await make_payment(session, console.b.institution, "SKRB000001", 40_000)
        recorded = await record_run(
            session=session,
            report=report_of(amount_mismatch(pa, 29_000), amount_mismatch(pb, 41_000), unplaced("SKRN000001")),
            now=console.clock.now(),
        )
        rows = {r.receipt: r.id for r in (await session.scalars(sa.select(ReconciliationException))).all()}
    return Queue(recorded.run.id, rows["SKRA000001"], rows["SKRB000001"], rows["SKRN000001"])


def _table(html: str) -> str:
    return html[html.index("<tbody>") : html.index("</tbody>")]


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))


async def _row(console: Console, exception_id: uuid.UUID) -> ReconciliationException:
    async with console.makers() as session:
        row = await session.get(ReconciliationException, exception_id)
        assert row is not None
        return row


async def _audits(console: Console) -> list[AuditLog]:
    async with console.makers() as session:
        # Sign-ins are audited too; these tests look at the changes.
        return list((await session.scalars(sa.select(AuditLog).where(AuditLog.action.not_like("auth.%")))).all())


async def test_a_school_admin_sees_its_queue_and_not_the_runs(console: Console) -> None:
    queue = await _queue(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get("/admin/reconciliation")
    assert status == 200 and "<h1>Reconciliation</h1>" in html
    assert 'data-figure="open_total"><div class="value">1<' in html
    assert 'id="runs"' not in html  # a run covers every school
    status, _ = await admin.get(f"/admin/reconciliation/runs/{queue.run_id}")
    assert status == 403
    status, body = await admin.get("/admin/reconciliation?format=csv")
    assert status == 200 and _csv(body) == []

    root = await console.as_user(console.root)
    status, html = await root.get("/admin/reconciliation")
    assert (
        'data-figure="open_total"><div class="value">3<' in html
        and f"/admin/reconciliation/runs/{queue.run_id}" in html
    )
    status, html = await root.get(f"/admin/reconciliation/runs/{queue.run_id}")
    assert status == 200 and "Amount mismatch" in html
    status, body = await root.get("/admin/reconciliation?format=csv")
    [run] = _csv(body)
    assert run["id"] == str(queue.run_id) and run["found"] == "3" and run["open"] == "3"
    status, body = await root.get("/admin/reconciliation?format=csv&from=2026-11-28")
    assert _csv(body) == []  # the run is of 27 November


async def test_the_queue_and_its_export_show_only_the_schools_own_exceptions(console: Console) -> None:
    queue = await _queue(console)
    admin_a = await console.as_user(console.a.admin)
    status, html = await admin_a.get("/admin/reconciliation/exceptions")
    assert status == 200 and "SKRA000001" in html
    assert "SKRB000001" not in html and "SKRN000001" not in html
    status, body = await admin_a.get("/admin/reconciliation/exceptions?format=csv")
    rows = _csv(body)
    assert [r["receipt"] for r in rows] == ["SKRA000001"]
    assert rows[0]["provider_amount_minor"] == "29000" and rows[0]["ledger_amount_minor"] == "30000"

    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin/reconciliation/exceptions?q=SKRA000001")
    assert "SKRA000001" not in _table(html) and "Nothing found." in html
    status, body = await admin_b.get("/admin/reconciliation/exceptions?format=csv")
    assert [r["receipt"] for r in _csv(body)] == ["SKRB000001"]
    for path in (f"/admin/reconciliation/exceptions/{queue.a}", f"/admin/reconciliation/exceptions/{queue.nobody}"):
        status, html = await admin_b.get(path)
        assert status == 404 and "SKRA000001" not in html and "SKRN000001" not in html

    root = await console.as_user(console.root)
    status, body = await root.get("/admin/reconciliation/exceptions?format=csv")
    by_receipt = {r["receipt"]: r for r in _csv(body)}
    assert set(by_receipt) == {"SKRA000001", "SKRB000001", "SKRN000001"}
    assert by_receipt["SKRA000001"]["institution"] == "Alpha School" and by_receipt["SKRN000001"]["institution"] == ""

    instructor = await console.as_user(console.a.instructor)
    assert (await instructor.get("/admin/reconciliation/exceptions"))[0] == 403
    assert (await instructor.get(f"/admin/reconciliation/exceptions/{queue.a}"))[0] == 403


async def test_filters_sorting_and_pages(console: Console) -> None:
    await _queue(console)
    root = await console.as_user(console.root)
    status, html = await root.get("/admin/reconciliation/exceptions?category=missing_in_ledger")
    assert "SKRN000001" in html and "SKRA000001" not in html
    status, html = await root.get("/admin/reconciliation/exceptions?status=resolved")
    assert "Nothing found." in html
    status, html = await root.get("/admin/reconciliation/exceptions?from=2026-11-28")
    assert "Nothing found." in html
    status, html = await root.get("/admin/reconciliation/exceptions?from=2026-11-27&to=2026-11-27&provider=mpesa")
    assert all(r in html for r in ("SKRA000001", "SKRB000001", "SKRN000001"))

    status, body = await root.get("/admin/reconciliation/exceptions?format=csv&sort=-amount")
    assert [r["receipt"] for r in _csv(body)] == ["SKRN000001", "SKRB000001", "SKRA000001"]
    status, body = await root.get("/admin/reconciliation/exceptions?format=csv&sort=amount")
    assert [r["receipt"] for r in _csv(body)] == ["SKRA000001", "SKRB000001", "SKRN000001"]

    status, html = await root.get("/admin/reconciliation/exceptions?sort=amount")
    assert html.index("SKRA000001") < html.index("SKRB000001") < html.index("SKRN000001")
    assert 'rel="next"' not in html

    # More than a page: the pager walks every row once, keeping the filters and the order.
    async with console.makers() as session, session.begin():
        many = [unplaced(f"SKRM{i:06d}", amount=100 * (i + 1)) for i in range(55)]
        await record_run(session=session, report=report_of(*many), now=console.clock.now())
    seen: list[str] = []
    path = "/admin/reconciliation/exceptions?category=missing_in_ledger&sort=-amount"
    while path:
        status, html = await root.get(path)
        assert status == 200
        seen += re.findall(r'class="code">(SKR[MN]\d{6})<', html)
        found = re.search(r'<a href="([^"]+)" rel="next">', html)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert len(seen) == 56 == len(set(seen)) and seen[0] == "SKRN000001" and seen[-1] == "SKRM000000"
    status, _ = await root.get("/admin/reconciliation/exceptions?sort=nonsense")
    assert status == 422
    status, _ = await root.get("/admin/reconciliation/exceptions?cursor=not-ours")
    assert status in (400, 422)


async def test_resolving_an_exception_is_saved_and_audited(console: Console) -> None:
    queue = await _queue(console)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get(f"/admin/reconciliation/exceptions/{queue.a}")
    assert status == 200 and 'id="resolve"' in html and 'name="_csrf"' in html

    # A write-off without a note is refused with the field named, and nothing changes.
    response = await admin.post(f"/admin/reconciliation/exceptions/{queue.a}/resolve", {"resolution": "written_off"})
    assert response.status == 422
    text = await response.text()
    assert 'id="note-error"' in text and "write-off needs a note" in text
    response = await admin.post(f"/admin/reconciliation/exceptions/{queue.a}/resolve", {"resolution": "healed"})
    assert response.status == 422
    response = await admin.post(f"/admin/reconciliation/exceptions/{queue.a}/resolve", {"resolution": "bogus"})
    assert response.status == 422 and 'id="resolution-error"' in await response.text()
    assert (await _row(console, queue.a)).status is ExceptionStatus.OPEN and await _audits(console) == []

    response = await admin.post(
        f"/admin/reconciliation/exceptions/{queue.a}/resolve",
        {"resolution": "written_off", "note": "KES 10 bank charge, agreed with the bursar"},
    )
    assert response.status == 303
    assert response.headers["Location"] == f"/admin/reconciliation/exceptions/{queue.a}"
    row = await _row(console, queue.a)
    async with console.makers() as session:
        admin_id = await session.scalar(sa.select(User.id).where(User.username == console.a.admin))
    assert row.status is ExceptionStatus.RESOLVED and row.resolution is Resolution.WRITTEN_OFF
    assert row.note == "KES 10 bank charge, agreed with the bursar" and row.resolved_by_id == admin_id
    assert row.resolved_at == console.clock.now()
    [entry] = await _audits(console)
    assert entry.action == "reconciliation.exception.resolve" and entry.target_id == str(queue.a)
    assert entry.institution_id == console.a.institution.id and entry.actor_user_id == admin_id
    assert entry.before == {"status": "open", "resolution": None, "note": None}
    assert entry.after is not None and entry.after["resolution"] == "written_off"

    status, html = await admin.get(f"/admin/reconciliation/exceptions/{queue.a}")
    assert "The exception is resolved." in html and 'id="resolve"' not in html and "Written off" in html
    # Twice is a conflict, and leaves the first verdict and its single audit entry alone.
    response = await admin.post(f"/admin/reconciliation/exceptions/{queue.a}/resolve", {"resolution": "refunded"})
    assert response.status == 409
    assert (await _row(console, queue.a)).resolution is Resolution.WRITTEN_OFF and len(await _audits(console)) == 1
    status, html = await admin.get("/admin/reconciliation/exceptions?status=open")
    assert "SKRA000001" not in html


async def test_another_school_cannot_resolve(console: Console) -> None:
    queue = await _queue(console)
    admin_b = await console.as_user(console.b.admin)
    for target in (queue.a, queue.nobody):
        response = await admin_b.post(
            f"/admin/reconciliation/exceptions/{target}/resolve", {"resolution": "not_an_issue", "note": "mine now"}
        )
        assert response.status == 404
        assert (await _row(console, target)).status is ExceptionStatus.OPEN
    response = await admin_b.post(
        f"/admin/reconciliation/exceptions/{queue.a}/resolve", {"resolution": "refunded"}, csrf=False
    )
    assert response.status == 403
    assert await _audits(console) == []


async def test_platform_admins_resolve_what_no_school_can_see(console: Console) -> None:
    queue = await _queue(console)
    root = await console.as_user(console.root)
    response = await root.post(
        f"/admin/reconciliation/exceptions/{queue.nobody}/resolve", {"resolution": "matched_manually"}
    )
    assert response.status == 303
    row = await _row(console, queue.nobody)
    assert row.resolution is Resolution.MATCHED_MANUALLY and row.note is None
    [entry] = await _audits(console)
    assert entry.institution_id is None and entry.target_id == str(queue.nobody)


async def test_the_queue_speaks_kiswahili(console: Console) -> None:
    queue = await _queue(console)
    admin = await console.as_user(console.a.admin)
    await admin.post("/admin/language", {"lang": "sw", "back": "/admin"})
    status, html = await admin.get("/admin/reconciliation/exceptions")
    assert "<h1>Foleni ya hitilafu</h1>" in html and "Kiasi hakilingani" in html
    status, html = await admin.get(f"/admin/reconciliation/exceptions/{queue.a}")
    assert "Imefutwa kwenye hesabu" in html  # a resolution among the choices
