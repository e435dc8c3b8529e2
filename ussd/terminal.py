"""``somo ussd``: a feature phone in the terminal, for people trying the menus.

It speaks Africa's Talking's real form protocol to the server (a new ``sessionId`` per dial,
``text`` growing with every input), so what works here works through the gateway. Each
screen is shown with its length against the 160-character budget.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from lms_domain.phones import code_for_network, network_of, normalize_msisdn

Reader = Callable[[str], Awaitable[str | None]]  # prompt -> a line, or None at end of input
Writer = Callable[[str], None]


async def console_reader(prompt: str) -> str | None:
    try:
        return await asyncio.to_thread(input, prompt)
    except EOFError:
        return None


@dataclass
class Handset:
    url: str
    phone: str
    service_code: str
    network_code: str
    session_id: str = ""
    inputs: list[str] = field(default_factory=list)

    async def hop(self, http: aiohttp.ClientSession) -> str:
        form = {
            "sessionId": self.session_id,
            "serviceCode": self.service_code,
            "phoneNumber": self.phone,
            "networkCode": self.network_code,
            "text": "*".join(self.inputs),
        }
        async with http.post(self.url, data=form) as response:
            body = await response.text()
            if response.status != 200:
                return f"END (HTTP {response.status}) {body[:120]}"
            return body


def frame(body: str) -> str:
    """The screen as a phone shows it, with what the gateway counts."""
    kind, _, screen = body.partition(" ")
    width = max([len(line) for line in screen.split("\n")] + [24])
    status = f"{kind} {len(body)}/160 chars" + ("  OVER THE LIMIT" if len(body) > 160 else "")
    lines = [f"+{'-' * (width + 2)}+", *(f"| {line.ljust(width)} |" for line in screen.split("\n"))]
    return "\n".join([*lines, f"+{'-' * (width + 2)}+", status])


async def run_terminal(
    *,
    url: str,
    phone: str,
    service_code: str = "*384*123#",
    network_code: str | None = None,
    read: Reader = console_reader,
    write: Writer = print,
    once: bool = False,
) -> int:
    """Dial, show each screen, send each typed line; on ``END`` offer to dial again.
    The number of sessions dialled is returned (for tests)."""
    e164 = normalize_msisdn(phone)
    handset = Handset(
        url=url,
        phone=e164,
        service_code=service_code,
        network_code=network_code or code_for_network(network_of(e164)) or "63902",
    )
    sessions = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        while True:
            handset.session_id, handset.inputs = f"ATUid_{uuid.uuid4().hex}", []
            sessions += 1
            write(f"Dialling {service_code} from {e164} (network {handset.network_code})")
            body = await handset.hop(http)
            while True:
                write(frame(body))
                if not body.startswith("CON "):
                    break
                line = await read("> ")
                if line is None:
                    return sessions
                handset.inputs.append(line.strip())
                body = await handset.hop(http)
            if once:
                return sessions
            again = await read("Dial again? [y/N] ")
            if again is None or again.strip().lower() not in ("y", "yes", "ndiyo"):
                return sessions
