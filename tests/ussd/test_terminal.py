"""``somo ussd``: a person at a terminal dials the real endpoint and sees each screen."""

from __future__ import annotations

import asyncio
import sys

from tests.ussd.conftest import World
from ussd.terminal import frame, run_terminal


async def test_the_terminal_dials_over_ats_protocol_and_shows_lengths(world: World) -> None:
    shown: list[str] = []
    feed = iter(["1234", "2", "00", "5", "y", "1234", "00"])

    async def read(prompt: str) -> str | None:
        return next(feed, None)

    sessions = await run_terminal(
        url=str(world.client.make_url("/ussd/africastalking")), phone="0700000001", read=read, write=shown.append
    )
    assert sessions == 2
    screens = [s for s in shown if s.startswith("+")]
    assert "| Amina Wanjiru, enter your 4-digit PIN:" in screens[0] and screens[0].endswith("CON 42/160 chars")
    assert any("Form 2 Mathematics: 0% done" in s for s in screens)
    assert any(s.startswith("+") and "END" in s.splitlines()[-1] for s in screens)  # Help ends the session
    assert shown[0] == "Dialling *384*123# from +254700000001 (network 63902)"


def test_a_screen_over_the_limit_is_flagged() -> None:
    assert frame("CON " + "x" * 170).endswith("CON 174/160 chars  OVER THE LIMIT")


async def test_somo_ussd_runs_from_the_command_line(world: World) -> None:
    url = str(world.client.make_url("/ussd/africastalking"))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server.cli",
        "ussd",
        "--phone",
        "0733000001",
        "--url",
        url,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(b"1\n"), timeout=60)
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert "(network 63903)" in text  # an Airtel prefix
    assert "This phone is not registered." in text and "Choose language:" in text
