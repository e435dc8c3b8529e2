"""The notifier the jobs and flows send through: an SMS sender (Africa's Talking, or Azure
Communication Services where ``SOMO_NOTIFICATIONS__SMS_PROVIDER=acs``) and the ACS email sender.

A ``dev-`` ACS connection string (the development default) points both ACS senders at the
loopback simulator that ``somo simulate`` serves, with the simulator's development key.
"""

from __future__ import annotations

import base64

from lms_domain.notifications.ports import SmsSender
from lms_domain.notifications.service import Senders
from server.providers.acs import AcsEmail, AcsSms
from server.providers.sms import AfricasTalkingSms
from server.settings import PLACEHOLDER_PREFIX, Settings

# The access key the simulator checks HMAC signatures with in development (not a secret).
SIMULATOR_ACS_KEY = base64.b64encode(b"somo-acs-simulator-development-key").decode()


def acs_connection_string(settings: Settings) -> str:
    configured = settings.notifications.acs_connection_string.get_secret_value()
    if configured.startswith(PLACEHOLDER_PREFIX):
        return f"endpoint={settings.payments.simulator_url.rstrip('/')}/;accesskey={SIMULATOR_ACS_KEY}"
    return configured


def build_senders(settings: Settings, at_sms: SmsSender | None = None) -> Senders:
    """The senders ``settings`` asks for; ``at_sms`` reuses an Africa's Talking sender made already."""
    notifications = settings.notifications
    connection = acs_connection_string(settings)
    sms: SmsSender
    if notifications.sms_provider == "acs":
        sms = AcsSms.from_connection_string(connection, notifications.acs_sms_from)
    else:
        sms = at_sms or AfricasTalkingSms.from_settings(settings)
    return Senders(
        sms=sms,
        email=AcsEmail.from_connection_string(connection, notifications.sender_email),
        contacts={"ussd_code": settings.ussd.service_code, "shortcode": notifications.sms_shortcode},
    )
