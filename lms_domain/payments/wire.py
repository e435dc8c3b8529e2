"""Reading a provider's JSON body, the one step every callback parser starts with."""

from __future__ import annotations

import json
from typing import Any

from lms_domain.errors import InvalidInput


def load_json(body: bytes, *, what: str, code: str) -> Any:
    """The decoded body, or ``InvalidInput`` with code ``<code>_not_json``: not UTF-8, not JSON,
    or nested so deep that decoding it would exhaust the stack (a hostile body, never a 500)."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidInput(f"the {what} body is not JSON", code=f"{code}_not_json") from exc
