"""Notification templates (the event catalogue, a school's own wording) and learners' preferences."""

from __future__ import annotations

from typing import Any

from lms_domain.notifications import preferences, templates
from lms_domain.notifications.schemas import (
    EventCatalogue,
    NotificationPreferences,
    NotificationPreferencesUpdate,
    TemplateIn,
    TemplateListQuery,
    TemplateOut,
    TemplatePage,
)
from lms_domain.tenancy.models import Role
from server.api.registry import Api, Call

api = Api(
    "notifications",
    description="The notification events, their templates (platform defaults and a school's own), "
    "and each learner's language and channel switches.",
)

ADMINS = frozenset({Role.PLATFORM_ADMIN, Role.INSTITUTION_ADMIN})


@api.get("/notifications/events", summary="The notification events", response=EventCatalogue, auth=ADMINS)
async def list_notification_events(call: Call[Any, Any]) -> EventCatalogue:
    """Each event with the `{variables}` its templates may use and the channels it goes by."""
    return EventCatalogue(items=templates.list_events())


@api.get(
    "/notifications/templates",
    summary="List notification templates",
    query=TemplateListQuery,
    response=TemplatePage,
    auth=ADMINS,
)
async def list_notification_templates(call: Call[Any, TemplateListQuery]) -> TemplatePage:
    """The platform defaults and the caller's school's own; an event without any uses its built-in text."""
    async with call.read() as session:
        return TemplatePage(
            items=await templates.list_templates(session=session, actor=call.actor, event=call.query.event)
        )


@api.put(
    "/notifications/templates",
    summary="Save a notification template",
    body=TemplateIn,
    response=TemplateOut,
    auth=ADMINS,
    extra_responses={404: "`institution_id` names another school (only platform admins choose)."},
)
async def save_notification_template(call: Call[TemplateIn, Any]) -> TemplateOut:
    """Creates or replaces the template for (school, event, channel, language). A school admin
    always writes their school's own; platform admins write the default with `institution_id`
    null. Refused (422) for an unknown event or variable, unbalanced braces, a channel the event
    does not use, or an SMS with a subject. `warnings` flag SMS texts that cost extra."""
    async with call.uow() as session:
        return await templates.save_template(session=session, actor=call.actor, data=call.body, now=call.clock.now())


@api.delete("/notifications/templates/{template_id}", summary="Delete a notification template", status=204, auth=ADMINS)
async def delete_notification_template(call: Call[Any, Any]) -> None:
    """The platform's (or the built-in) text is used again. School admins delete their school's only."""
    async with call.uow() as session:
        await templates.delete_template(session=session, actor=call.actor, template_id=call.path_uuid("template_id"))


@api.get(
    "/learners/{learner_id}/notification-preferences",
    summary="A learner's notification preferences",
    response=NotificationPreferences,
)
async def get_notification_preferences(call: Call[Any, Any]) -> NotificationPreferences:
    """The learner themself or staff of their school."""
    async with call.read() as session:
        return await preferences.preferences_of(
            session=session, actor=call.actor, learner_id=call.path_uuid("learner_id")
        )


@api.put(
    "/learners/{learner_id}/notification-preferences",
    summary="Change a learner's notification preferences",
    body=NotificationPreferencesUpdate,
    response=NotificationPreferences,
)
async def update_notification_preferences(call: Call[NotificationPreferencesUpdate, Any]) -> NotificationPreferences:
    """The learner themself or staff of their school. What the body leaves out stays as it is,
    so the document GET answers can be sent back changed."""
    async with call.uow() as session:
        return await preferences.update_preferences(
            session=session,
            actor=call.actor,
            learner_id=call.path_uuid("learner_id"),
            data=call.body,
            now=call.clock.now(),
        )
