"""`somo simulate` serves the Daraja and Airtel simulators with the credentials from the settings."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from server.settings import Settings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_simulate_answers_oauth_with_the_configured_credentials(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "SOMO_PAYMENTS__MPESA_CONSUMER_KEY": "dev-key-1",
        "SOMO_PAYMENTS__MPESA_CONSUMER_SECRET": "dev-s",
        "SOMO_PAYMENTS__AIRTEL_CLIENT_ID": "dev-airtel-1",
        "SOMO_PAYMENTS__AIRTEL_CLIENT_SECRET": "dev-a",
    }
    somo = Path(sys.executable).parent / "somo"
    proc = subprocess.Popen(
        [str(somo), "simulate", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/oauth/v1/generate?grant_type=client_credentials"
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = requests.get(url, auth=("dev-key-1", "dev-s"), timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "simulator did not start"
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["expires_in"] == "3599"
        # Airtel is served on the same port with its own credentials.
        airtel = requests.post(
            f"http://127.0.0.1:{port}/auth/oauth2/token",
            json={"client_id": "dev-airtel-1", "client_secret": "dev-a", "grant_type": "client_credentials"},
            timeout=2,
        )
        assert airtel.status_code == 200 and airtel.json()["access_token"]
        refused = requests.get(url, auth=("someone-else", "nope"), timeout=2)
        assert refused.status_code >= 400
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0


def test_simulate_is_refused_in_production(tmp_path: Path) -> None:
    env = {**os.environ, "SOMO_ENVIRONMENT": "production"}
    for name, _placeholder in Settings().secrets():  # every secret set, so only the command refuses
        env[name] = "a-real-secret-" + "x" * 40
    somo = Path(sys.executable).parent / "somo"
    done = subprocess.run([str(somo), "simulate"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "refusing" in done.stderr and "Traceback" not in done.stderr
