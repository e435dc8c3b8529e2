"""The weekly progress digest: one SMS per phone, covering every learner profile on it.

A parent's phone often carries two or three children's profiles; one message a week that
names each child's courses and last score is what a parent can act on, and it costs one
message, not one per child. It goes in the first profile's language (the phone's owner set
it up), respects that profile's opt-out, and is sent once per phone and ISO week (its dedupe
key), so a re-run of the job in the same week sends nothing more.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock, to_nairobi
from lms_domain.learning.summaries import CourseReport, progress_report
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.models import Learner

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


async def _digest_phone(session: AsyncSession, learners: list[Learner], week: str, now: datetime) -> bool:
    reports = [(learner, await progress_report(session=session, learner_id=learner.id)) for learner in learners]
    names = " & ".join(learner.display_name.split()[0] for learner in learners)
    queued = await notify_learner(
        session=session,
        learner_id=learners[0].id,
        event="progress_digest",
        values={"learner_name": names, "summary": summarise(reports), "week": week.split("-W")[1]},
        dedupe_key=f"progress_digest:{learners[0].phone_id}:{week}",
        now=now,
    )
    return bool(queued)


async def send_progress_digests(
    *, sessions: async_sessionmaker[AsyncSession], clock: Clock, batch: int = 200
) -> dict[str, int]:
    """Queue this week's digest for every phone with at least one active learner profile."""
    now = clock.now()
    year, week_no, _ = to_nairobi(now).isocalendar()
    week = f"{year}-W{week_no:02d}"
    phones = queued = 0
    after: uuid.UUID | None = None
    while True:
        async with sessions() as session, session.begin():
            stmt = (
                sa.select(Learner.phone_id)
                .where(Learner.phone_id.is_not(None), Learner.deleted_at.is_(None))
                .group_by(Learner.phone_id)
                .order_by(Learner.phone_id)
                .limit(batch)
            )
            if after is not None:
                stmt = stmt.where(Learner.phone_id > after)
            phone_ids = [p for p in await session.scalars(stmt) if p is not None]
            if not phone_ids:
                break
            after = phone_ids[-1]
            rows = await session.scalars(
                sa.select(Learner)
                .where(Learner.phone_id.in_(phone_ids), Learner.deleted_at.is_(None))
                .order_by(Learner.phone_id, Learner.id)  # ids are time-ordered: the first profile first
            )
            by_phone: dict[uuid.UUID, list[Learner]] = {}
            for learner in rows:
                assert learner.phone_id is not None
                by_phone.setdefault(learner.phone_id, []).append(learner)
            for learners in by_phone.values():
                phones += 1
                queued += await _digest_phone(session, learners, week, now)
    return {"phones": phones, "queued": queued}
