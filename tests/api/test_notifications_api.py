"""Notification templates and learners' notification preferences over HTTP: validation,
who may edit which template, tenancy, and that what is saved is what the next message uses."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from lms_domain.i18n import Language
from lms_domain.notifications.models import NotificationChannel, NotificationLog, NotificationTemplate
from lms_domain.notifications.preferences import channel_allowed
from lms_domain.notifications.service import notify_learner
from lms_domain.tenancy.models import Learner
from tests.api.conftest import School, World
from tests.conftest import T0
from tests.factories import make_learner

V1 = "/api/v1"
TEMPLATES = V1 + "/notifications/templates"


def template(body: str, **extra: Any) -> dict[str, Any]:
    return {"event": "payment_received", "channel": "sms", "language": "en", "body": body, **extra}


def prefs_path(learner_id: uuid.UUID | str) -> str:
    return f"{V1}/learners/{learner_id}/notification-preferences"


async def ok(world: World, method: str, path: str, token: str, status: int = 200, **kw: Any) -> Any:
    got, body = await world.call(method, path, token, **kw)
    assert got == status, body
    return body


async def stored_templates(world: World) -> list[tuple[uuid.UUID | None, str]]:
    async with world.makers() as session:
        rows = await session.execute(sa.select(NotificationTemplate.institution_id, NotificationTemplate.body))
        return sorted(((i, b) for i, b in rows), key=str)


async def queue_payment_received(world: World, school: School, key: str) -> NotificationLog:
    """Queue the event for the school's learner as a payment would, and read back its SMS."""
    async with world.makers() as session, session.begin():
        ids = await notify_learner(
            session=session,
            learner_id=school.learner.id,
            event="payment_received",
            values={"amount": "300", "receipt": "SKA123"},
            dedupe_key=key,
            now=T0,
        )
        entries = [await session.get(NotificationLog, log_id) for log_id in ids]
    sms = [e for e in entries if e is not None and e.channel is NotificationChannel.SMS]
    assert len(sms) == 1
    return sms[0]


# Events and templates ---------------------------------------------------------------------


async def test_event_catalogue_lists_each_events_variables(world: World) -> None:
    catalogue = await ok(world, "GET", V1 + "/notifications/events", world.a.tokens["institution_admin"])
    by_name = {e["name"]: e for e in catalogue["items"]}
    assert by_name["payment_received"]["variables"] == ["amount", "learner_name", "receipt"]
    assert by_name["payment_received"]["channels"] == ["sms", "email"]
    assert by_name["admin_alert"]["channels"] == ["email"] and by_name["admin_alert"]["audience"] == "admin"
    for role in ("instructor", "learner"):
        assert (await world.call("GET", V1 + "/notifications/events", world.a.tokens[role]))[0] == 403


async def test_a_saved_template_is_what_the_next_notification_says(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    before = await queue_payment_received(world, world.a, "before")
    assert before.body == "Thank you Learner Alpha School. We received KES 300, receipt SKA123."

    saved = await ok(world, "PUT", TEMPLATES, admin, json=template("Asante {learner_name}: KES {amount} ({receipt})"))
    assert saved["institution_id"] == str(world.a.institution.id)
    assert saved["variables"] == ["amount", "learner_name", "receipt"] and saved["warnings"] == []

    after = await queue_payment_received(world, world.a, "after")
    assert after.body == "Asante Learner Alpha School: KES 300 (SKA123)"
    assert str(after.template_id) == saved["id"]
    # The other school's learners still get the built-in text.
    other = await queue_payment_received(world, world.b, "other")
    assert other.body.startswith("Thank you Learner Beta School.") and other.template_id is None

    # Saving again replaces the same template; switching it off falls back to the built-in text.
    again = await ok(world, "PUT", TEMPLATES, admin, json=template("Paid {amount}", is_active=False))
    assert again["id"] == saved["id"] and again["is_active"] is False
    assert (await queue_payment_received(world, world.a, "inactive")).body.startswith("Thank you")
    assert len(await stored_templates(world)) == 1


async def test_bad_templates_are_refused_with_the_problem_named(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    cases: list[tuple[dict[str, Any], str, str]] = [
        (template("Hi", event="payment_recieved"), "unknown_event", "payment_recieved"),
        (template("Paid {amout}"), "unknown_variable", "{amout}"),
        (template("Hi {learner_name"), "template_syntax", "braces"),
        (template("Hi {learner_name.upper}"), "template_syntax", "learner_name.upper"),
        (template("Hi {learner_name!r}"), "template_syntax", "learner_name"),
        (template("Paid {amount}", subject="Receipt"), "sms_subject", "subject"),
        (template("Paid {amount}", channel="email", subject="For {amout}"), "unknown_variable", "{amout}"),
        (template("{title}", event="admin_alert"), "channel_not_used", "email"),
    ]
    for data, code, named in cases:
        status, problem = await world.call("PUT", TEMPLATES, admin, json=data)
        assert status == 422, (data, problem)
        assert problem["code"] == code and named in problem["detail"], (data, problem)
        assert problem["type"].endswith(code)
    status, problem = await world.call("PUT", TEMPLATES, admin, json=template("Hi", language="fr"))
    assert status == 422 and problem["code"] == "validation_error"
    assert await stored_templates(world) == []


async def test_school_admins_edit_only_their_own_schools_templates(world: World) -> None:
    a_admin, b_admin = world.a.tokens["institution_admin"], world.b.tokens["institution_admin"]
    default = await ok(world, "PUT", TEMPLATES, world.platform_token, json=template("Platform: {amount}"))
    assert default["institution_id"] is None

    # Naming another school is a 404; naming none means the admin's own school, never the default.
    status, problem = await world.call(
        "PUT", TEMPLATES, b_admin, json=template("B writes for A", institution_id=str(world.a.institution.id))
    )
    assert status == 404 and problem["code"] == "not_found"
    own = await ok(world, "PUT", TEMPLATES, a_admin, json=template("A: {amount}", institution_id=None))
    assert own["institution_id"] == str(world.a.institution.id) and own["id"] != default["id"]
    assert await stored_templates(world) == sorted(
        [(None, "Platform: {amount}"), (world.a.institution.id, "A: {amount}")], key=str
    )

    # Deleting another school's template or the platform default: not found, and still there.
    assert (await world.call("DELETE", f"{TEMPLATES}/{own['id']}", b_admin))[0] == 404
    assert (await world.call("DELETE", f"{TEMPLATES}/{default['id']}", a_admin))[0] == 404
    assert (await world.call("DELETE", f"{TEMPLATES}/{uuid.uuid4()}", a_admin))[0] == 404
    assert (await world.call("DELETE", f"{TEMPLATES}/not-a-uuid", a_admin))[0] == 404
    assert len(await stored_templates(world)) == 2

    # Each school lists the default and its own, not the other's; the platform lists all.
    listed = await ok(world, "GET", TEMPLATES, b_admin)
    assert [t["id"] for t in listed["items"]] == [default["id"]]
    listed = await ok(world, "GET", TEMPLATES + "?event=payment_received", a_admin)
    assert {t["id"] for t in listed["items"]} == {default["id"], own["id"]}
    assert (await ok(world, "GET", TEMPLATES + "?event=quiz_result", a_admin))["items"] == []
    assert len((await ok(world, "GET", TEMPLATES, world.platform_token))["items"]) == 2
    status, problem = await world.call("GET", TEMPLATES + "?event=nope", a_admin)
    assert status == 422 and problem["code"] == "unknown_event"
    assert (await world.call("GET", TEMPLATES, world.a.tokens["instructor"]))[0] == 403
    assert (await world.call("PUT", TEMPLATES, world.a.tokens["instructor"], json=template("x")))[0] == 403

    # School B's learners get the platform default; once A deletes its own, so do A's.
    assert (await queue_payment_received(world, world.b, "b")).body == "Platform: 300"
    assert (await world.call("DELETE", f"{TEMPLATES}/{own['id']}", a_admin))[0] == 204
    assert (await queue_payment_received(world, world.a, "a")).body == "Platform: 300"
    assert await stored_templates(world) == [(None, "Platform: {amount}")]


async def test_sms_templates_carry_cost_warnings(world: World) -> None:
    admin = world.a.tokens["institution_admin"]
    saved = await ok(world, "PUT", TEMPLATES, admin, json=template("Asante ✓ {amount}"))
    assert len(saved["warnings"]) == 1 and "UCS-2" in saved["warnings"][0]
    listed = await ok(world, "GET", TEMPLATES, admin)
    assert listed["items"][0]["warnings"] == saved["warnings"]
    email = await ok(world, "PUT", TEMPLATES, admin, json=template("✓ " * 200, channel="email"))
    assert email["warnings"] == []


# Preferences ------------------------------------------------------------------------------


async def allowed(world: World, learner_id: uuid.UUID, channel: NotificationChannel, event: str) -> bool:
    async with world.makers() as session:
        return await channel_allowed(session=session, learner_id=learner_id, channel=channel, event=event)


async def test_preferences_round_trip_and_steer_what_is_sent(world: World) -> None:
    learner_token, learner_id = world.a.tokens["learner"], world.a.learner.id
    path = prefs_path(learner_id)
    defaults = await ok(world, "GET", path, learner_token)
    assert defaults["language"] == "en"
    assert defaults["sms"] == {"enabled": True} and defaults["email"] == {"enabled": False}
    assert "admin_alert" not in defaults["events"] and "payment_received" in defaults["events"]
    assert all(e == {"sms": None, "email": None} for e in defaults["events"].values())

    changed = await ok(
        world,
        "PUT",
        path,
        learner_token,
        json={
            "language": "sw",
            "email": {"enabled": True},
            "events": {"payment_received": {"sms": False}, "certificate_issued": {"email": False}},
        },
    )
    assert changed["language"] == "sw" and changed["sms"] == {"enabled": True} and changed["email"] == {"enabled": True}
    assert changed["events"]["payment_received"] == {"sms": False, "email": None}
    assert changed["events"]["certificate_issued"] == {"sms": None, "email": False}
    assert await ok(world, "GET", path, learner_token) == changed
    # Sending the document back unchanged changes nothing.
    assert await ok(world, "PUT", path, learner_token, json=changed) == changed

    sms, email = NotificationChannel.SMS, NotificationChannel.EMAIL
    assert not await allowed(world, learner_id, sms, "payment_received")
    assert await allowed(world, learner_id, sms, "certificate_issued")
    assert await allowed(world, learner_id, email, "payment_received")
    assert not await allowed(world, learner_id, email, "certificate_issued")
    async with world.makers() as session:
        stored = await session.get(Learner, learner_id)
        assert stored is not None and stored.language is Language.SW

    # null hands an event back to the channel's switch; SMS off everywhere is STOP.
    cleared = await ok(
        world,
        "PUT",
        path,
        learner_token,
        json={"sms": {"enabled": False}, "events": {"payment_received": {"sms": None}}},
    )
    assert cleared["events"]["payment_received"] == {"sms": None, "email": None} and cleared["sms"] == {
        "enabled": False
    }
    assert cleared["language"] == "sw"  # left out, left alone
    assert not await allowed(world, learner_id, sms, "certificate_issued")


async def test_staff_manage_preferences_of_their_own_schools_learners_only(world: World) -> None:
    path = prefs_path(world.a.learner.id)
    body = {"language": "sw", "events": {"renewal_due": {"sms": False}}}
    for role in ("institution_admin", "instructor"):
        assert (await world.call("GET", path, world.a.tokens[role]))[0] == 200
    assert (await ok(world, "PUT", path, world.a.tokens["instructor"], json=body))["language"] == "sw"
    assert (await ok(world, "GET", path, world.platform_token))["events"]["renewal_due"]["sms"] is False

    before = await ok(world, "GET", path, world.a.tokens["learner"])
    for token in world.b.tokens.values():
        for method, kw in (("GET", {}), ("PUT", {"json": {"language": "en"}})):
            status, problem = await world.call(method, path, token, **kw)
            assert status == 404 and problem["code"] == "not_found", (method, problem)
    # Another learner of the same school is not there either, as far as a learner can tell.
    async with world.makers() as session, session.begin():
        classmate = await make_learner(session, institution=world.a.institution, name="Classmate")
    assert (await world.call("GET", prefs_path(classmate.id), world.a.tokens["learner"]))[0] == 404
    assert (await world.call("PUT", prefs_path(classmate.id), world.a.tokens["learner"], json={}))[0] == 404
    assert (await world.call("GET", prefs_path(classmate.id), world.a.tokens["instructor"]))[0] == 200
    assert (await world.call("GET", prefs_path(uuid.uuid4()), world.a.tokens["institution_admin"]))[0] == 404
    assert (await world.call("GET", prefs_path("me"), world.a.tokens["learner"]))[0] == 404
    assert (await world.call("GET", path))[0] == 401
    assert await ok(world, "GET", path, world.a.tokens["learner"]) == before


async def test_unknown_events_in_preferences_are_refused_and_nothing_changes(world: World) -> None:
    path, token = prefs_path(world.a.learner.id), world.a.tokens["learner"]
    before = await ok(world, "GET", path, token)
    for event in ("payment_recieved", "*", "admin_alert"):
        body = {"language": "sw", "events": {"renewal_due": {"sms": False}, event: {"sms": False}}}
        status, problem = await world.call("PUT", path, token, json=body)
        assert status == 422 and problem["code"] == "unknown_event", (event, problem)
    status, problem = await world.call("PUT", path, token, json={"events": {"renewal_due": {"push": True}}})
    assert status == 422 and problem["code"] == "validation_error"
    # Quiz results go by email only: an SMS switch for them is refused, a null one is harmless.
    status, problem = await world.call("PUT", path, token, json={"events": {"quiz_result": {"sms": True}}})
    assert status == 422 and problem["code"] == "channel_not_used"
    assert (await ok(world, "PUT", path, token, json={"events": {"quiz_result": {"sms": None}}})) == before
    status, problem = await world.call("PUT", path, token, json={"sms": {"enabled": "no"}})
    assert status == 422 and problem["code"] == "validation_error"
    assert await ok(world, "GET", path, token) == before
