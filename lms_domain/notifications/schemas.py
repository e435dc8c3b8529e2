"""What the notification endpoints take and answer: the event catalogue, templates and a
learner's notification preferences.

A learner's preferences read back in the shape they are written, so a client can GET them,
change a switch and PUT the document back.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lms_domain.i18n import Language
from lms_domain.notifications.models import NotificationChannel


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str = Field(max_length=64)
    channel: NotificationChannel = NotificationChannel.SMS
    language: Language
    subject: str | None = Field(default=None, max_length=200)
    body: str = Field(min_length=1, max_length=2000)
    institution_id: uuid.UUID | None = None  # platform admins only: NULL is the platform default
    is_active: bool = True


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    institution_id: uuid.UUID | None
    event: str
    channel: NotificationChannel
    language: Language
    subject: str | None
    body: str
    variables: list[str]
    is_active: bool
    updated_at: datetime | None = None
    warnings: list[str] = []


class EventOut(BaseModel):
    name: str
    variables: list[str]
    channels: list[NotificationChannel]
    audience: str


class EventCatalogue(BaseModel):
    """Every notification event, the variables its templates may use and its channels."""

    items: list[EventOut]


class TemplateListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event: str | None = Field(default=None, max_length=64, description="Only this event's templates.")


class TemplatePage(BaseModel):
    items: list[TemplateOut]


class ChannelSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool


class EventSwitches(BaseModel):
    """One event's own setting per channel; null follows the channel's switch. An event's SMS
    can only be turned off here: with SMS off for every event (STOP), none is sent. An event's
    email setting wins over the email switch."""

    model_config = ConfigDict(extra="forbid")

    sms: bool | None = None
    email: bool | None = None


class NotificationPreferences(BaseModel):
    """A learner's language and notification switches. SMS is on and email off until changed."""

    language: Language
    sms: ChannelSwitch
    email: ChannelSwitch
    events: dict[str, EventSwitches] = Field(description="Every event sent to learners, by name.")


class NotificationPreferencesUpdate(BaseModel):
    """What to change: fields left out stay as they are. In ``events``, a channel left out of an
    event stays as it is and a null one goes back to following the channel's switch."""

    model_config = ConfigDict(extra="forbid")

    language: Language | None = None
    sms: ChannelSwitch | None = None
    email: ChannelSwitch | None = None
    events: dict[str, EventSwitches] = Field(default_factory=dict)
