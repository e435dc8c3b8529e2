"""Console: institutions, users, learners (phone search, shared phones, PIN reset, unlock)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import sqlalchemy as sa

from lms_domain.platform.models import AuditLog
from lms_domain.tenancy.models import Institution, Learner, User
from lms_domain.tenancy.service import create_learner
from tests.admin.conftest import Console
from tests.factories import FAST_HASHER


async def test_learners_are_found_by_phone_in_any_format_and_by_name(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    for typed in ("0711000001", "+254711000001", "254 711 000 001"):
        status, html = await admin.get(f"/admin/learners?q={typed.replace('+', '%2B').replace(' ', '+')}")
        assert status == 200
        assert "Learner Alpha School" in html, typed
    status, html = await admin.get("/admin/learners?q=alpha")
    assert "Learner Alpha School" in html
    status, html = await admin.get("/admin/learners?q=0799999999")
    assert "Learner Alpha School" not in html and "Nothing found." in html


async def test_another_schools_learners_never_show(console: Console) -> None:
    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin/learners?q=0711000001")
    assert "Learner Alpha School" not in html
    status, html = await admin_b.get("/admin/learners?format=csv")
    assert status == 200 and "Learner Alpha School" not in html and "Learner Beta School" in html
    status, html = await admin_b.get(f"/admin/learners/{console.a.learner.id}")
    assert status == 404 and "Learner Alpha School" not in html
    response = await admin_b.post(f"/admin/learners/{console.a.learner.id}/pin", {"pin": "9999", "pin_again": "9999"})
    assert response.status == 404
    async with console.makers() as session:
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None and FAST_HASHER.verify(learner.pin_hash or "", "1234")


async def test_profiles_on_a_shared_phone_are_listed(console: Console) -> None:
    async with console.makers() as session, session.begin():
        sibling = await create_learner(
            session=session,
            institution_id=console.a.institution.id,
            display_name="Sibling Zawadi",
            phone="0711000001",
            pin="5555",
            hasher=FAST_HASHER,
        )
        # The same phone at another school stays out of school A's view.
        await create_learner(
            session=session,
            institution_id=console.b.institution.id,
            display_name="Cousin Elsewhere",
            phone="0711000001",
            pin="5555",
            hasher=FAST_HASHER,
        )
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get(f"/admin/learners/{console.a.learner.id}")
    assert status == 200
    assert f'/admin/learners/{sibling.id}">Sibling Zawadi' in html
    assert "Cousin Elsewhere" not in html


async def test_pin_reset_sets_the_new_pin_lifts_the_lock_and_is_audited(console: Console) -> None:
    async with console.makers() as session, session.begin():
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None
        learner.pin_failed_count = 3
        learner.pin_locked_until = console.clock.now() + timedelta(minutes=15)
    admin = await console.as_user(console.a.admin)
    status, html = await admin.get(f"/admin/learners/{console.a.learner.id}")
    assert "locked until" in html
    response = await admin.post(f"/admin/learners/{console.a.learner.id}/pin", {"pin": "4321", "pin_again": "4321"})
    assert response.status == 303
    async with console.makers() as session:
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None
        assert FAST_HASHER.verify(learner.pin_hash or "", "4321")
        assert learner.pin_locked_until is None and learner.pin_failed_count == 0
        entry = await session.scalar(sa.select(AuditLog).where(AuditLog.action == "learner.pin_reset"))
        assert entry is not None and entry.target_id == str(console.a.learner.id)
        assert entry.institution_id == console.a.institution.id
        assert "4321" not in str(entry.before) + str(entry.after)
        actor = await session.get(User, entry.actor_user_id)
        assert actor is not None and actor.username == console.a.admin


async def test_a_bad_pin_is_refused_and_nothing_changes(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    for pin, again in (("12a4", "12a4"), ("12345", "12345"), ("1111", "2222")):
        response = await admin.post(f"/admin/learners/{console.a.learner.id}/pin", {"pin": pin, "pin_again": again})
        assert response.status == 422, pin
        html = await response.text()
        assert 'data-field="pin' in html and "nothing was saved" in html
    async with console.makers() as session:
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None and FAST_HASHER.verify(learner.pin_hash or "", "1234")
        changes = sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.action.not_like("auth.%"))
        assert await session.scalar(changes) == 0


async def test_instructors_cannot_reset_pins(console: Console) -> None:
    instructor = await console.as_user(console.a.instructor)
    response = await instructor.post(
        f"/admin/learners/{console.a.learner.id}/pin", {"pin": "4321", "pin_again": "4321"}
    )
    assert response.status == 403


async def test_unlock_lifts_a_lockout(console: Console) -> None:
    async with console.makers() as session, session.begin():
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None
        learner.pin_failed_count = 3
        learner.pin_locked_until = console.clock.now() + timedelta(minutes=15)
    admin = await console.as_user(console.a.admin)
    response = await admin.post(f"/admin/learners/{console.a.learner.id}/unlock")
    assert response.status == 303
    async with console.makers() as session:
        learner = await session.get(Learner, console.a.learner.id)
        assert learner is not None and learner.pin_locked_until is None and learner.pin_failed_count == 0


async def test_csv_export_neutralises_formulas(console: Console) -> None:
    async with console.makers() as session, session.begin():
        await create_learner(
            session=session,
            institution_id=console.a.institution.id,
            display_name="=HYPERLINK(1)",
            phone=None,
            pin=None,
            hasher=FAST_HASHER,
        )
    admin = await console.as_user(console.a.admin)
    status, text = await admin.get("/admin/learners?format=csv")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:2] == ["id", "display_name"]
    names = {r[1] for r in rows[1:]}
    assert "'=HYPERLINK(1)" in names and "Learner Alpha School" in names


async def test_users_are_created_and_deactivated_within_the_school(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    response = await admin.post(
        "/admin/users", {"username": "bursar-a", "password": "long-enough-pw", "role": "institution_admin"}
    )
    assert response.status == 303
    async with console.makers() as session:
        user = await session.scalar(sa.select(User).where(User.username == "bursar-a"))
        assert user is not None and user.institution_id == console.a.institution.id and user.is_active
    response = await admin.post(f"/admin/users/{user.id}", {"full_name": "Bursar A"})  # is_active unticked
    assert response.status == 303
    async with console.makers() as session:
        changed = await session.get(User, user.id)
        assert changed is not None and not changed.is_active and changed.full_name == "Bursar A"
    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin/users?q=bursar")
    assert "bursar-a" not in html
    assert (await admin_b.get(f"/admin/users/{user.id}"))[0] == 404
    # A school admin cannot make a platform admin.
    response = await admin.post(
        "/admin/users", {"username": "sneaky", "password": "long-enough-pw", "role": "platform_admin"}
    )
    assert response.status in (403, 404, 422)
    async with console.makers() as session:
        assert await session.scalar(sa.select(User).where(User.username == "sneaky")) is None


async def test_institutions_are_for_platform_admins(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    assert (await admin.get("/admin/institutions"))[0] == 403
    root = await console.as_user(console.root)
    status, html = await root.get("/admin/institutions?q=alpha")
    assert status == 200 and "Alpha School" in html and "Beta School" not in html
    response = await root.post("/admin/institutions", {"name": "Gamma Academy", "code": "GAMMA1"})
    assert response.status == 303
    async with console.makers() as session:
        gamma = await session.scalar(sa.select(Institution).where(Institution.code == "GAMMA1"))
        assert gamma is not None and gamma.name == "Gamma Academy"
    response = await root.post("/admin/institutions", {"name": "Dup", "code": "GAMMA1"})
    assert response.status == 409
    response = await root.post("/admin/institutions", {"name": "", "code": "x"})
    assert response.status == 422


async def test_audit_log_is_scoped_to_the_school(console: Console) -> None:
    admin = await console.as_user(console.a.admin)
    await admin.post(f"/admin/learners/{console.a.learner.id}/unlock")
    status, html = await admin.get("/admin/audit")
    assert status == 200 and "learner.unlock" in html
    status, text = await admin.get("/admin/audit?format=csv&action=learner.unlock")
    assert "learner.unlock" in text and console.a.admin in text
    admin_b = await console.as_user(console.b.admin)
    status, html = await admin_b.get("/admin/audit")
    assert "learner.unlock" not in html
    status, text = await admin_b.get("/admin/audit?format=csv")
    assert "learner.unlock" not in text


async def test_platform_admins_filter_users_by_school_and_odd_numbers_are_refused(console: Console) -> None:
    root = await console.as_user(console.root)
    status, html = await root.get(f"/admin/users?institution_id={console.b.institution.id}")
    assert status == 200 and console.b.admin in html and console.a.admin not in html
    response = await root.post(
        f"/admin/institutions/{console.a.institution.id}", {"name": "Alpha School", "code": "ALPHA", "vat_rate_bp": "²"}
    )
    assert response.status == 422
    async with console.makers() as session:
        school = await session.get(Institution, console.a.institution.id)
        assert school is not None and school.code != "ALPHA"
