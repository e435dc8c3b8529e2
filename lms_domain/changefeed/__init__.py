"""Change capture for offline sync: HLC versions, the outbox and per-scope sequences."""

from lms_domain.changefeed.capture import CATALOG_SCOPE, NodeRole, SyncContext, install_change_capture
from lms_domain.changefeed.hlc import HybridLogicalClock

__all__ = ["CATALOG_SCOPE", "HybridLogicalClock", "NodeRole", "SyncContext", "install_change_capture"]
