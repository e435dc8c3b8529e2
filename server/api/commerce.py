"""Products, prices, coupons, checkout, invoices, receipts, refunds and subscriptions."""

from __future__ import annotations

from server.api.registry import Api

api = Api("commerce", description="Products, prices, coupons, checkout, invoices, receipts, refunds and subscriptions.")
