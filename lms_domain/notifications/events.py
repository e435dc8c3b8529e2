"""The notification events Somo sends, the variables each may use, and their built-in texts.

The catalogue is code, not data, because the code that raises an event is what fills its
variables: a template may only use what the event supplies, and that is checked when the
template is saved (``templates.save_template``), never discovered when a learner's SMS goes out
with ``{amount}`` in it. The built-in texts make every event sendable on a fresh install; a
platform or school template in the database overrides them.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from lms_domain.errors import InvalidInput
from lms_domain.i18n import Language
from lms_domain.notifications.models import NotificationChannel

SMS, EMAIL = NotificationChannel.SMS, NotificationChannel.EMAIL


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event: who it goes to, the variables it fills, and its default texts."""

    name: str
    variables: frozenset[str]
    channels: tuple[NotificationChannel, ...]
    body: dict[Language, str]  # one text for every channel: it must read as an SMS
    subject: dict[Language, str]  # email only
    audience: str = "learner"  # or "admin": alerts go to an institution's admins by email

    def default_body(self, language: Language) -> str:
        return self.body.get(language) or self.body[Language.EN]

    def default_subject(self, language: Language) -> str:
        return self.subject.get(language) or self.subject[Language.EN]


def _event(
    name: str,
    variables: str,
    en: str,
    sw: str,
    subject_en: str,
    subject_sw: str,
    *,
    channels: tuple[NotificationChannel, ...] = (SMS, EMAIL),
    audience: str = "learner",
) -> EventSpec:
    return EventSpec(
        name=name,
        variables=frozenset(["learner_name", *variables.split()]),
        channels=channels,
        body={Language.EN: en, Language.SW: sw},
        subject={Language.EN: subject_en, Language.SW: subject_sw},
        audience=audience,
    )


EVENTS: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        _event(
            "enrollment_confirmed",
            "course_title",
            "Hi {learner_name}, you are enrolled in {course_title}. Dial the Somo code to start learning.",
            "Habari {learner_name}, umesajiliwa katika {course_title}. Piga nambari ya Somo kuanza kusoma.",
            "You are enrolled",
            "Umesajiliwa",
        ),
        _event(
            "payment_received",
            "amount receipt",
            "Thank you {learner_name}. We received KES {amount}, receipt {receipt}.",
            "Asante {learner_name}. Tumepokea KES {amount}, risiti {receipt}.",
            "Payment received",
            "Malipo yamepokelewa",
        ),
        _event(
            "payment_failed",
            "amount ussd_code",
            "Hi {learner_name}, your payment of KES {amount} did not go through. Dial {ussd_code} to try again.",
            "Habari {learner_name}, malipo yako ya KES {amount} hayakufaulu. Piga {ussd_code} kujaribu tena.",
            "Payment not completed",
            "Malipo hayakukamilika",
        ),
        _event(
            "renewal_due",
            "amount due_date ussd_code shortcode",
            "Hi {learner_name}, Somo renews on {due_date} for KES {amount}. Reply RENEW to {shortcode} "
            "or dial {ussd_code} to approve.",
            "Habari {learner_name}, Somo inaisha {due_date}, KES {amount}. Jibu RENEW kwa {shortcode} "
            "au piga {ussd_code} kukubali.",
            "Your Somo renewal",
            "Usajili wako wa Somo",
        ),
        _event(
            "dunning_attempt",
            "amount due_date ussd_code shortcode attempt attempts_total access_until",
            "{learner_name}, Somo (KES {amount}) was due {due_date}. Reply RENEW to {shortcode} or dial "
            "{ussd_code}. Access ends {access_until}.",
            "{learner_name}, Somo (KES {amount}) ilitakiwa {due_date}. Jibu RENEW kwa {shortcode} au piga "
            "{ussd_code}. Itaisha {access_until}.",
            "Somo payment reminder {attempt}/{attempts_total}",
            "Ukumbusho wa malipo ya Somo {attempt}/{attempts_total}",
        ),
        _event(
            "grace_ending",
            "amount access_until ussd_code shortcode",
            "{learner_name}, your Somo access ends {access_until}. Reply RENEW to {shortcode} or dial "
            "{ussd_code} to keep learning.",
            "{learner_name}, Somo yako itaisha {access_until}. Jibu RENEW kwa {shortcode} au piga "
            "{ussd_code} kuendelea.",
            "Your Somo access is ending",
            "Somo yako inakaribia kuisha",
        ),
        _event(
            "subscription_cancelled",
            "ussd_code",
            "Hi {learner_name}, your Somo subscription has ended. Dial {ussd_code} to renew.",
            "Habari {learner_name}, usajili wako wa Somo umekwisha. Piga {ussd_code} kuurejesha.",
            "Your Somo subscription has ended",
            "Usajili wako wa Somo umekwisha",
        ),
        _event(
            "subscription_downgraded",
            "plan_name ussd_code",
            "Hi {learner_name}, your Somo plan is now {plan_name}. Dial {ussd_code} to go back to Premium.",
            "Habari {learner_name}, mpango wako wa Somo sasa ni {plan_name}. Piga {ussd_code} kurudi Premium.",
            "Your Somo plan has changed",
            "Mpango wako wa Somo umebadilika",
        ),
        _event(
            "certificate_issued",
            "course_title code",
            "Congratulations {learner_name}! You completed {course_title}. Certificate code: {code}.",
            "Hongera {learner_name}! Umehitimu {course_title}. Nambari ya cheti: {code}.",
            "Your certificate",
            "Cheti chako",
        ),
        _event(
            "quiz_result",
            "quiz_title score max_score",
            "{learner_name}, you scored {score}/{max_score} in {quiz_title}.",
            "{learner_name}, umepata {score}/{max_score} katika {quiz_title}.",
            "Your quiz result",
            "Matokeo ya jaribio",
            # The score is on the learner's screen the moment they submit (USSD, app, web): an
            # SMS would only repeat it at a cost, so the record goes by email to those who want it.
            channels=(EMAIL,),
        ),
        _event(
            "progress_digest",
            "summary week",
            "Somo week {week}, {learner_name}: {summary}",
            "Somo wiki {week}, {learner_name}: {summary}",
            "Weekly progress",
            "Maendeleo ya wiki",
        ),
        _event(
            "admin_alert",
            "title detail institution_name",
            "Somo alert for {institution_name}: {title}. {detail}",
            "Tahadhari ya Somo kwa {institution_name}: {title}. {detail}",
            "Somo alert: {title}",
            "Tahadhari ya Somo: {title}",
            channels=(EMAIL,),
            audience="admin",
        ),
    )
}


def event_spec(name: str) -> EventSpec:
    """The event called ``name``; an unknown one is a clear error, not a silent no-op."""
    spec = EVENTS.get(name)
    if spec is None:
        raise InvalidInput(
            f"unknown notification event {name!r}; known: {', '.join(sorted(EVENTS))}", code="unknown_event"
        )
    return spec


def template_variables(text: str) -> set[str]:
    """The ``{variables}`` a template uses. Malformed braces, attribute or index access and
    format specs are refused: a template is plain text with named holes, nothing more."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidInput(f"the template's braces do not match: {exc}", code="template_syntax") from None
    names: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise InvalidInput(
                f"{{{field}}} is not a plain variable; write {{name}} with a letter-or-underscore name",
                code="template_syntax",
            )
        names.add(field)
    return names


def check_template(spec: EventSpec, *texts: str) -> set[str]:
    """The variables the texts use, all of which ``spec`` supplies; else ``InvalidInput`` naming them."""
    used: set[str] = set()
    for text in texts:
        used |= template_variables(text)
    unknown = used - spec.variables
    if unknown:
        raise InvalidInput(
            f"unknown variable(s) {', '.join('{' + v + '}' for v in sorted(unknown))} for {spec.name}; "
            f"it supplies {', '.join('{' + v + '}' for v in sorted(spec.variables))}",
            code="unknown_variable",
        )
    return used
