"""Every model, imported once so ``Base.metadata`` is complete (alembic, create_all)."""

from lms_domain.assessments.models import Answer, Attempt, Certificate, Question, QuestionChoice, Quiz
from lms_domain.changefeed.models import OutboxEntry, SyncConflict, SyncCounter, SyncRejection, SyncState
from lms_domain.commerce.models import Coupon, Invoice, LineItem, Order, Price, Product, Receipt, Refund
from lms_domain.courses.models import (
    Asset,
    Course,
    CourseTag,
    Enrollment,
    Lesson,
    LessonProgress,
    Prerequisite,
    Section,
    Tag,
)
from lms_domain.db import Base
from lms_domain.entitlements.models import Entitlement
from lms_domain.ledger.models import JournalEntry, LedgerAccount, Posting
from lms_domain.messaging.models import InboundSms, SmsDeliveryReport, UssdSessionEvent
from lms_domain.notifications.models import (
    NotificationLog,
    NotificationPreference,
    NotificationTemplate,
    NotificationTry,
)
from lms_domain.payments.exceptions import ReconciliationException, ReconciliationRun
from lms_domain.payments.models import Payment, PaymentIntent, PaymentMethod, ProviderAccount, WebhookEvent
from lms_domain.platform.models import AuditLog, EdgeNode, IdempotencyKey, RefreshToken
from lms_domain.subscriptions.models import (
    DunningSchedule,
    QueuedRenewal,
    Subscription,
    SubscriptionItem,
    SubscriptionRenewalAttempt,
    SubscriptionUsage,
)
from lms_domain.tenancy.models import Institution, Learner, Phone, User

__all__ = [
    "Answer",
    "Asset",
    "Attempt",
    "AuditLog",
    "Base",
    "Certificate",
    "Coupon",
    "Course",
    "CourseTag",
    "DunningSchedule",
    "EdgeNode",
    "Enrollment",
    "Entitlement",
    "IdempotencyKey",
    "InboundSms",
    "Institution",
    "Invoice",
    "JournalEntry",
    "Learner",
    "LedgerAccount",
    "Lesson",
    "LessonProgress",
    "LineItem",
    "NotificationLog",
    "NotificationPreference",
    "NotificationTemplate",
    "NotificationTry",
    "Order",
    "OutboxEntry",
    "Payment",
    "PaymentIntent",
    "PaymentMethod",
    "Phone",
    "Posting",
    "Prerequisite",
    "Price",
    "Product",
    "ProviderAccount",
    "Question",
    "QuestionChoice",
    "QueuedRenewal",
    "Quiz",
    "Receipt",
    "ReconciliationException",
    "ReconciliationRun",
    "RefreshToken",
    "Refund",
    "Section",
    "SmsDeliveryReport",
    "Subscription",
    "SubscriptionItem",
    "SubscriptionRenewalAttempt",
    "SubscriptionUsage",
    "SyncConflict",
    "SyncCounter",
    "SyncRejection",
    "SyncState",
    "Tag",
    "User",
    "UssdSessionEvent",
    "WebhookEvent",
]
