"""What both ends of a sync agree on: the version, the headers, the cursor and the scope.

The protocol version and the capabilities travel as headers on every request and every
answer, so a mismatch is found on the first request of a sync, with no handshake round trip.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from lms_domain.changefeed.capture import CATALOG_SCOPE
from lms_domain.errors import InvalidInput

PROTOCOL_VERSION = 1
VERSION_HEADER = "Somo-Sync-Protocol"
CAPABILITIES_HEADER = "Somo-Sync-Capabilities"
CAPABILITIES = ("gzip", "coalesce", "tombstones", "assets-range")
MEDIA_TYPE = "application/json"

DEFAULT_BATCH_ROWS = 2_000
DEFAULT_BATCH_BYTES = 1024 * 1024  # uncompressed JSON; gzip makes it about a tenth on the wire
MAX_BATCH_ROWS = 10_000
MAX_PUSH_BYTES = 8 * 1024 * 1024  # compressed body ceiling for one push


def protocol_headers() -> dict[str, str]:
    return {VERSION_HEADER: str(PROTOCOL_VERSION), CAPABILITIES_HEADER: ",".join(CAPABILITIES)}


@dataclass(frozen=True)
class Cursor:
    """How far a node has applied each feed it reads: the platform catalogue and its
    institution. Written ``catalog.institution`` on the wire (``0.0`` from scratch)."""

    catalog: int = 0
    institution: int = 0

    def __str__(self) -> str:
        return f"{self.catalog}.{self.institution}"

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        if not text:
            return cls()
        catalog, dot, institution = text.partition(".")
        if not dot or not catalog.isdigit() or not institution.isdigit():
            raise InvalidInput("the cursor is two whole numbers, catalogue.institution", code="invalid_cursor")
        return cls(int(catalog), int(institution))

    def feeds(self, institution_id: uuid.UUID) -> list[tuple[str, int]]:
        # The catalogue first: institution rows reference it, never the other way round.
        return [(CATALOG_SCOPE, self.catalog), (str(institution_id), self.institution)]

    def advanced(self, feed: str, seq: int) -> Cursor:
        if feed == CATALOG_SCOPE:
            return Cursor(seq, self.institution)
        return Cursor(self.catalog, seq)


@dataclass(frozen=True)
class SyncScope:
    """Who is syncing and what they may see: an edge node sees its institution; a learner's
    phone sees that one learner's rows. Taken from the credential, never from the payload."""

    institution_id: uuid.UUID
    node_id: uuid.UUID
    learner_id: uuid.UUID | None = None
