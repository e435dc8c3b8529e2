"""The weekly progress digest: one SMS per phone, covering every learner profile on it.

A parent's phone often carries two or three children's profiles; one message a week that
names each child's courses and last score is what a parent can act on, and it costs one
message, not one per child. Phones are shared across schools, so it is one message per phone
and school: a school's message carries only its own learners. It goes in the first profile's
language (the phone's owner set it up), respects that profile's opt-out, and is sent once per
phone, school and ISO week (its dedupe key), so a re-run in the same week sends nothing more.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock, to_nairobi
from lms_domain.learning.summaries import CourseReport, progress_report
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.models import Learner

log = logging.getLogger("somo.notifications")

SUMMARY_LIMIT = 240  # about two SMS segments once the greeting is added


def summarise(learners: Sequence[tuple[Learner, list[CourseReport]]]) -> str:
    """``Baraka: Form 2 Maths 50% (last quiz 67%); Zawadi: no course yet``, cut to fit."""
    language = learners[0][0].language
    parts = []
    for learner, reports in learners:
        first = learner.display_name.split()[0]
        if not reports:
            parts.append(f"{first}: " + ("bado hajaanza kozi" if language.value == "sw" else "no course yet"))
            continue
        courses = []
        for report in reports[:2]:
            line = f"{report.course.title(language)} {report.percent}%"
            if report.last_scores:
                line += f" ({'jaribio' if language.value == 'sw' else 'last quiz'} {report.last_scores[0]}%)"
            courses.append(line)
        parts.append(f"{first}: " + ", ".join(courses))
    summary = "; ".join(parts)
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 3].rstrip() + "..."


async def _digest(
    sessions: async_sessionmaker[AsyncSession], learner_ids: list[uuid.UUID], week: str, now: datetime
) -> bool:
    """One phone's digest for one school, in a short transaction of its own."""
    async with sessions() as session, session.begin():
        learners = list(
            await session.scalars(
                sa.select(Learner).where(Learner.id.in_(learner_ids)).order_by(Learner.id)  # time-ordered: first first
            )
        )
        if not learners:
            return False
        reports = [(learner, await progress_report(session=session, learner_id=learner.id)) for learner in learners]
        first = learners[0]
        queued = await notify_learner(
            session=session,
            learner_id=first.id,
            event="progress_digest",
            values={
                "learner_name": " & ".join(learner.display_name.split()[0] for learner in learners),
                "summary": summarise(reports),
                "week": week.split("-W")[1],
            },
            dedupe_key=f"progress_digest:{first.phone_id}:{first.institution_id}:{week}",
            now=now,
        )
    return bool(queued)


async def send_progress_digests(
    *, sessions: async_sessionmaker[AsyncSession], clock: Clock, batch: int = 500
) -> dict[str, int]:
    """Queue this week's digest for every phone with at least one active learner profile: one
    per (phone, school), since a school's message carries only that school's learners, in its
    template and quiet hours. A failure is logged and the pass goes on."""
    now = clock.now()
    year, week_no, _ = to_nairobi(now).isocalendar()
    week = f"{year}-W{week_no:02d}"
    phones = queued = failed = 0
    after: tuple[uuid.UUID, uuid.UUID] | None = None
    while True:
        async with sessions() as session:
            stmt = (
                sa.select(Learner.phone_id, Learner.institution_id)
                .where(Learner.phone_id.is_not(None), Learner.deleted_at.is_(None))
                .group_by(Learner.phone_id, Learner.institution_id)
                .order_by(Learner.phone_id, Learner.institution_id)
                .limit(batch)
            )
            if after is not None:
                stmt = stmt.where(sa.tuple_(Learner.phone_id, Learner.institution_id) > after)
            groups = [(p, i) for p, i in (await session.execute(stmt)).all() if p is not None]
            if not groups:
                break
            after = groups[-1]
            members: dict[tuple[uuid.UUID, uuid.UUID], list[uuid.UUID]] = {}
            for learner_id, phone_id, institution_id in await session.execute(
                sa.select(Learner.id, Learner.phone_id, Learner.institution_id).where(
                    Learner.phone_id.in_([p for p, _ in groups]), Learner.deleted_at.is_(None)
                )
            ):
                if phone_id is not None:
                    members.setdefault((phone_id, institution_id), []).append(learner_id)
        for group in groups:
            phones += 1
            try:
                queued += await _digest(sessions, members.get(group, []), week, now)
            except Exception:
                log.exception("progress digest failed", extra={"phone_id": str(group[0])})
                failed += 1
    return {"phones": phones, "queued": queued} | ({"failed": failed} if failed else {})
