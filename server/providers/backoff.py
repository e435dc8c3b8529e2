"""One provider HTTP call with bounded exponential backoff, shared by the Daraja and Airtel
adapters. What differs between providers (which answers mean "try again") is a callback; what
is the same is the part that must never be wrong: a request that may have reached the provider
is re-sent only when the caller says re-sending is harmless (``replay``), and otherwise fails
with ``outcome_unknown`` so the flow reconciles instead of charging twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from lms_domain.payments.ports import GatewayUnavailable

log = logging.getLogger("somo.providers")

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
# (status, payload, resent) -> should this answer be sent again? May raise instead.
RetryCheck = Callable[[int, dict[str, Any], bool], bool]


@dataclass(frozen=True, slots=True)
class Backoff:
    """How hard to try: ``attempts`` in all, waiting ``first_s`` doubling up to ``max_s``."""

    attempts: int = 3
    first_s: float = 0.5
    max_s: float = 4.0
    timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


async def read_json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    """The JSON object the provider sent, or ``{}`` for an empty, HTML or non-object body."""
    try:
        parsed = await response.json(content_type=None)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def exchange(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    provider: str,
    code_prefix: str,
    backoff: Backoff,
    replay: bool,
    retry: RetryCheck,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """Send one logical request; (status, JSON object) of the answer that was kept.

    A connection never made is retried whatever the request; a timeout or a dropped answer is
    retried only with ``replay``; an answer is retried when ``retry`` says so, except the last.
    """
    path = URL(url).path
    delay = backoff.first_s
    resent = False
    for attempt in range(1, backoff.attempts + 1):
        last = attempt == backoff.attempts
        try:
            async with http.request(
                method, url, json=json, params=params, headers=headers, timeout=backoff.timeout
            ) as response:
                status, payload = response.status, await read_json(response)
        except aiohttp.ClientConnectorError as exc:
            # The connection was never made, so nothing reached the provider: safe to re-send anything.
            if last:
                raise GatewayUnavailable(f"{provider} unreachable: {exc}", code=f"{code_prefix}_unreachable") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            if not replay:
                raise GatewayUnavailable(
                    f"{provider} did not answer {path}: {exc!r}; it may have been processed",
                    code=f"{code_prefix}_outcome_unknown",
                    outcome_unknown=True,
                ) from exc
            if last:
                raise GatewayUnavailable(
                    f"{provider} did not answer {path}: {exc!r}", code=f"{code_prefix}_timeout"
                ) from exc
        else:
            if not retry(status, payload, resent) or last:
                return status, payload
        log.warning("%s %s %s attempt %d failed; retrying in %.2fs", provider, method, path, attempt, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, backoff.max_s)
        resent = True
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
