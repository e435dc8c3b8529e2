"""Console pages: reconciliation reports and the exceptions queue.

The runs are kept by ``server.reconcile`` (the nightly job and ``somo reconcile``); these pages
read them and let an admin work through what they left open, through the same domain service
(``lms_domain.payments.exceptions``) and tenant scope as everything else.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from aiohttp import web

from lms_domain.errors import InvalidInput
from lms_domain.payments.exceptions import (
    MANUAL_RESOLUTIONS,
    ExceptionOut,
    ExceptionQuery,
    ExceptionSort,
    ExceptionStatus,
    Resolution,
    ResolveRequest,
    RunOut,
    RunQuery,
    get_exception,
    get_run,
    list_exceptions,
    list_runs,
    queue_summary,
    resolve_exception,
)
from lms_domain.payments.models import Provider
from lms_domain.payments.reconciliation import DiscrepancyClass
from server.admin.menu import ADMINS, PLATFORM
from server.admin.views import AdminRoutes, FormInvalid, Page, csv_response, every_page

routes = AdminRoutes()
CSV_MAX_ROWS = 50_000
CSV_BATCH = 200


def _(text: str) -> str:
    """Marks a label for the Kiswahili catalogue; pages translate it when they show it."""
    return text


CATEGORY_LABELS: dict[str, str] = {
    DiscrepancyClass.MISSING_IN_LEDGER: _("Missing in ledger"),
    DiscrepancyClass.MISSING_AT_PROVIDER: _("Missing at provider"),
    DiscrepancyClass.AMOUNT_MISMATCH: _("Amount mismatch"),
    DiscrepancyClass.DUPLICATE: _("Duplicate"),
}
STATUS_LABELS: dict[str, str] = {ExceptionStatus.OPEN: _("Open"), ExceptionStatus.RESOLVED: _("Resolved")}
RESOLUTION_LABELS: dict[str, str] = {
    Resolution.MATCHED_MANUALLY: _("Matched by hand"),
    Resolution.REFUNDED: _("Refunded"),
    Resolution.WRITTEN_OFF: _("Written off"),
    Resolution.PROVIDER_ERROR: _("Provider error"),
    Resolution.NOT_AN_ISSUE: _("Not an issue"),
    Resolution.HEALED: _("Healed by a later run"),
}
PROVIDER_LABELS: dict[str, str] = {
    Provider.MPESA: "M-Pesa",
    Provider.AIRTEL: "Airtel Money",
    Provider.MANUAL: _("Manual"),
}
RUN_COLUMNS = (
    "day",
    "started_at",
    "finished_at",
    "heal",
    "providers",
    "provider_records",
    "ledger_payments",
    "matched",
    "found",
    "healed",
    "open",
    "missing_at_provider_checked",
    "id",
)
SORTS = {s.value for s in ExceptionSort}
LABELS = {"categories": CATEGORY_LABELS, "statuses": STATUS_LABELS, "resolutions": RESOLUTION_LABELS}


def _labels() -> dict[str, Any]:
    return {**LABELS, "providers": PROVIDER_LABELS}


# Runs ------------------------------------------------------------------------------------------


def _run_query(page: Page) -> RunQuery:
    start, end = page.day_range()
    day_from: date | None = start.date() if start else None
    day_until: date | None = end.date() if end else None
    fields: dict[str, Any] = {"day_from": day_from, "day_until": day_until}
    if page.q("cursor"):
        fields["cursor"] = page.q("cursor")
    return page.validate(RunQuery, fields)


@routes.get("/admin/reconciliation", roles=ADMINS)
async def show_reconciliation(page: Page) -> web.StreamResponse:
    """The queue at a glance and, for platform admins, the runs (each covers every school)."""
    query = _run_query(page)
    if page.wants_csv:
        runs = await _all_runs(page, query)
        return csv_response(
            "reconciliation-runs.csv",
            RUN_COLUMNS,
            (
                [
                    r.day.isoformat(),
                    r.started_at,
                    r.finished_at,
                    "yes" if r.heal else "no",
                    " ".join(r.providers),
                    r.provider_records,
                    r.ledger_payments,
                    r.matched,
                    r.found,
                    r.healed,
                    r.open,
                    "yes" if r.checked_missing_at_provider else "no",
                    r.id,
                ]
                for r in runs
            ),
        )
    async with page.read() as session:
        summary = await queue_summary(session=session, actor=page.actor)
        runs, next_cursor = await list_runs(session=session, actor=page.actor, query=query)
    return await page.render(
        "admin/reconciliation/index.html",
        {"summary": summary, "runs": runs, "next_cursor": next_cursor, **_labels()},
    )


async def _all_runs(page: Page, query: RunQuery) -> list[RunOut]:
    async with page.read() as session:

        async def fetch(cursor: str | None) -> tuple[list[RunOut], str | None]:
            batch = query.model_copy(update={"cursor": cursor, "limit": CSV_BATCH})
            return await list_runs(session=session, actor=page.actor, query=batch)

        return await every_page(fetch, max_rows=CSV_MAX_ROWS)


@routes.get("/admin/reconciliation/runs/{run_id}", roles=PLATFORM)
async def show_run(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        run = await get_run(session=session, actor=page.actor, run_id=page.path_uuid("run_id"))
    counts: dict[str, dict[str, int]] = run.summary.get("counts", {})
    return await page.render("admin/reconciliation/run.html", {"run": run, "counts": counts, **_labels()})


# The exceptions queue --------------------------------------------------------------------------


def _exception_query(page: Page) -> ExceptionQuery:
    since, until = page.day_range()
    sort = page.q("sort", "-" + ExceptionSort.OCCURRED.value)
    descending = sort.startswith("-")
    sort_key = sort.removeprefix("-")
    if sort_key not in SORTS:
        raise FormInvalid({"sort": f"{sort!r} is not a column to sort by"})
    fields: dict[str, Any] = {
        n: page.q(q) for n, q in (("status", "status"), ("category", "category"), ("provider", "provider")) if page.q(q)
    }
    if page.q("q"):
        fields["search"] = page.q("q")
    if page.q("cursor"):
        fields["cursor"] = page.q("cursor")
    return page.validate(
        ExceptionQuery, {**fields, "since": since, "until": until, "sort": sort_key, "descending": descending}
    )


def _filter_fields(page: Page) -> list[dict[str, Any]]:
    return [
        {"name": "q", "label": "Receipt or CheckoutRequestID", "placeholder": "SKR..."},
        {"name": "status", "label": "Status", "options": list(STATUS_LABELS.items())},
        {"name": "category", "label": "Class", "options": list(CATEGORY_LABELS.items())},
        {"name": "provider", "label": "Provider", "options": list(PROVIDER_LABELS.items())},
    ]


@routes.get("/admin/reconciliation/exceptions", roles=ADMINS)
async def show_exceptions(page: Page) -> web.StreamResponse:
    """The queue: the actor's school's exceptions (all of them for platform admins)."""
    query = _exception_query(page)
    if page.wants_csv:
        return _exceptions_csv(await _all_exceptions(page, query))
    async with page.read() as session:
        items, next_cursor = await list_exceptions(session=session, actor=page.actor, query=query)
    return await page.render(
        "admin/reconciliation/exceptions.html",
        {"items": items, "next_cursor": next_cursor, "fields": _filter_fields(page), **_labels()},
    )


async def _all_exceptions(page: Page, query: ExceptionQuery) -> list[ExceptionOut]:
    async with page.read() as session:

        async def fetch(cursor: str | None) -> tuple[list[ExceptionOut], str | None]:
            batch = query.model_copy(update={"cursor": cursor, "limit": CSV_BATCH})
            return await list_exceptions(session=session, actor=page.actor, query=batch)

        return await every_page(fetch, max_rows=CSV_MAX_ROWS)


def _exceptions_csv(rows: list[ExceptionOut]) -> web.Response:
    header = [
        "id",
        "institution",
        "status",
        "class",
        "provider",
        "receipt",
        "checkout_request_id",
        "provider_amount_minor",
        "ledger_amount_minor",
        "currency",
        "occurred_at",
        "reason",
        "times_seen",
        "first_seen_at",
        "last_seen_at",
        "resolution",
        "note",
        "resolved_by",
        "resolved_at",
        "payment_id",
        "intent_id",
    ]
    return csv_response(
        "reconciliation-exceptions.csv",
        header,
        (
            [
                e.id,
                e.institution_name,
                e.status.value,
                e.category.value,
                e.provider,
                e.receipt,
                e.checkout_request_id,
                e.provider_amount_minor,
                e.ledger_amount_minor,
                e.currency,
                e.occurred_at,
                e.reason,
                e.times_seen,
                e.first_seen_at,
                e.last_seen_at,
                e.resolution.value if e.resolution else None,
                e.note,
                e.resolved_by_username,
                e.resolved_at,
                e.payment_id,
                e.intent_id,
            ]
            for e in rows
        ),
    )


async def _render_exception(
    page: Page, item: ExceptionOut, *, errors: dict[str, str] | None = None, status: int = 200
) -> web.Response:
    return await page.render(
        "admin/reconciliation/exception.html",
        {
            "item": item,
            "choices": [(r.value, RESOLUTION_LABELS[r]) for r in MANUAL_RESOLUTIONS],
            "errors": errors or {},
            "form": page.form,
            **_labels(),
        },
        status=status,
    )


@routes.get("/admin/reconciliation/exceptions/{exception_id}", roles=ADMINS)
async def show_exception(page: Page) -> web.StreamResponse:
    async with page.read() as session:
        item = await get_exception(session=session, actor=page.actor, exception_id=page.path_uuid("exception_id"))
    return await _render_exception(page, item)


@routes.post("/admin/reconciliation/exceptions/{exception_id}/resolve", roles=ADMINS)
async def resolve(page: Page) -> web.StreamResponse:
    """Close an exception with a resolution and a note; audited in the same unit of work."""
    exception_id = page.path_uuid("exception_id")
    try:
        data = page.validate(
            ResolveRequest,
            {"resolution": page.form.get("resolution", ""), "note": page.form.get("note", "").strip() or None},
        )
        async with page.uow() as session:
            before = await get_exception(session=session, actor=page.actor, exception_id=exception_id)
            after = await resolve_exception(
                session=session,
                actor=page.actor,
                exception_id=exception_id,
                resolution=data.resolution,
                note=data.note,
                now=page.clock.now(),
            )
            await page.audit(
                session,
                action="reconciliation.exception.resolve",
                target_type="reconciliation_exception",
                target_id=exception_id,
                institution_id=after.institution_id,
                before={"status": before.status, "resolution": before.resolution, "note": before.note},
                after={"status": after.status, "resolution": after.resolution, "note": after.note},
            )
    except (FormInvalid, InvalidInput) as exc:
        errors = exc.errors if isinstance(exc, FormInvalid) else {_error_field(exc): exc.detail}
        async with page.read() as session:
            item = await get_exception(session=session, actor=page.actor, exception_id=exception_id)
        return await _render_exception(page, item, errors=errors, status=422)
    page.flash(page._("The exception is resolved."))
    return await page.redirect(f"/admin/reconciliation/exceptions/{exception_id}")


def _error_field(exc: InvalidInput) -> str:
    return "note" if exc.code.startswith("note") else "resolution"
