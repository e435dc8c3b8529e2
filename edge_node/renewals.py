"""Renewal approvals at a school: the same path as the central API, queued instead of sent.

The edge holds no provider credentials, so it cannot prompt a phone itself; it records the
approval, which syncs up, and the central server's ``queued-renewals`` job sends the one
prompt. The answer says so, and the row's outcome comes back down with the next sync.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from lms_domain.payments import queued_renewals
from lms_domain.payments.schemas import RenewalRequest
from lms_domain.subscriptions.models import QueuedRenewalStatus
from server.api.registry import Api, Call

api = Api("renewals at school", description="Approving a renewal at a school's edge node, for the central server.")


class QueuedRenewalOut(BaseModel):
    id: uuid.UUID
    subscription_id: uuid.UUID
    status: QueuedRenewalStatus
    requested_at: datetime
    detail: str = "queued: the payment prompt is sent from the central server after the next sync"


@api.post(
    "/subscriptions/{subscription_id}/renew",
    summary="Approve a renewal (queued at the school)",
    body=RenewalRequest,
    response=QueuedRenewalOut,
    status=202,
    idempotent=True,
)
async def approve_renewal_at_school(call: Call[RenewalRequest, Any]) -> QueuedRenewalOut:
    """202: queued. The learner's phone gets the M-Pesa (or Airtel) prompt once this node has
    synced and the central server has sent it; the outcome syncs back onto the row."""
    async with call.uow() as session:
        queued = await queued_renewals.queue_renewal(
            session=session,
            actor=call.actor,
            subscription_id=call.path_uuid("subscription_id"),
            phone=call.body.phone,
            period_start=call.body.period_start,
            clock=call.clock,
        )
        return QueuedRenewalOut(
            id=queued.id, subscription_id=queued.subscription_id, status=queued.status, requested_at=queued.requested_at
        )
