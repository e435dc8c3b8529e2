"""The HTTP side of a node: credentials, retries on an expired token, gzip both ways.

Tokens are kept by the node's monotonic clock ("valid for N seconds from when I got it"),
never compared with the wall clock, which on a school server may be days out. A token the
server nevertheless calls expired is renewed once, transparently.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sync import auth
from sync.codec import compress, dumps, inflate, loads
from sync.protocol import Cursor, protocol_headers

TOKEN_MARGIN_S = 30.0
ASSET_CHUNK = 256 * 1024


class SyncError(Exception):
    """The server refused a request: its status, problem code and explanation."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body or {}


@dataclass
class Traffic:
    requests: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class SyncClient:
    """One node's (or one learner's) connection to the central server."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        *,
        node_id: uuid.UUID | None = None,
        key: Ed25519PrivateKey | None = None,
        bearer: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.http = http
        self.base = base_url.rstrip("/") + "/sync/v1"
        self.node_id = node_id
        self.key = key
        self._token = bearer
        self._token_until = float("inf") if bearer else 0.0
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.traffic = Traffic()

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        authed: bool = True,
        gzip_body: bool = False,
    ) -> tuple[int, bytes]:
        headers = protocol_headers()
        headers["Accept-Encoding"] = "gzip"
        if body is not None:
            headers["Content-Type"] = "application/json"
            if gzip_body:
                headers["Content-Encoding"] = "gzip"
        if authed:
            headers["Authorization"] = f"Bearer {await self.token()}"
        self.traffic.requests += 1
        self.traffic.bytes_up += len(body or b"")
        async with self.http.request(
            method,
            self.base + path,
            data=body,
            params=params,
            headers=headers,
            timeout=self.timeout,
            auto_decompress=False,
        ) as response:
            raw = await response.read()
            self.traffic.bytes_down += len(raw)
            if response.headers.get("Content-Encoding", "").lower() == "gzip":
                raw = inflate(raw)
            return response.status, raw

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        status, raw = await self._raw(method, path, **kwargs)
        if status == 401 and kwargs.get("authed", True) and self.key is not None:
            self._token_until = 0.0  # the server says no: renew once and try again
            status, raw = await self._raw(method, path, **kwargs)
        document = loads(raw) if raw else {}
        if status >= 400:
            body = document if isinstance(document, dict) else {}
            raise SyncError(status, str(body.get("code", "error")), str(body.get("detail", raw[:200])), body)
        return document

    async def token(self) -> str:
        if self._token and time.monotonic() < self._token_until:
            return self._token
        if self.key is None or self.node_id is None:
            raise SyncError(401, "no_credentials", "this client has no node key to sign in with")
        challenge = await self._call("POST", "/challenge", body=dumps({"node_id": str(self.node_id)}), authed=False)
        nonce = str(challenge["nonce"])
        answer = await self._call(
            "POST",
            "/token",
            body=dumps({"node_id": str(self.node_id), "nonce": nonce, "signature": auth.sign(self.key, nonce)}),
            authed=False,
        )
        self._token = str(answer["token"])
        self._token_until = time.monotonic() + float(answer["expires_in"]) - TOKEN_MARGIN_S
        return self._token

    async def enroll(self, code: str, public_key: str) -> dict[str, Any]:
        body = dumps({"code": code, "public_key": public_key})
        result: dict[str, Any] = await self._call("POST", "/enroll", body=body, authed=False)
        return result

    async def pull(self, cursor: Cursor, limit: int, *, pushed: str | None = None) -> dict[str, Any]:
        """``pushed``: this node's ``EPOCH.ACKED`` push watermark, when it holds every row it
        pushed; the central server then leaves those rows out (see ``sync.feed``)."""
        params = {"cursor": str(cursor), "limit": str(limit)}
        if pushed:
            params["pushed"] = pushed
        document: dict[str, Any] = await self._call("GET", "/pull", params=params)
        return document

    async def push(self, document: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", "/push", body=compress(dumps(document)), gzip_body=True)
        return result

    async def new_epoch(self) -> int:
        return int((await self._call("POST", "/epoch", body=b"{}"))["epoch"])

    async def download_asset(self, sha256: str, target: Path) -> bool:
        """Fetch a lesson file into ``target``, resuming a partial ``.part`` file with Range;
        kept only if its checksum matches. False when the server has no such file."""
        part = target.with_suffix(target.suffix + ".part")
        target.parent.mkdir(parents=True, exist_ok=True)
        have = part.stat().st_size if part.exists() else 0
        headers = {**protocol_headers(), "Authorization": f"Bearer {await self.token()}"}
        if have:
            headers["Range"] = f"bytes={have}-"
        self.traffic.requests += 1
        async with self.http.get(self.base + f"/assets/{sha256}", headers=headers, timeout=self.timeout) as response:
            if response.status == 404:
                return False
            if response.status == 416:  # the part file is already whole
                pass
            elif response.status not in (200, 206):
                raise SyncError(response.status, "asset_unavailable", f"asset {sha256[:12]}: HTTP {response.status}")
            else:
                mode = "ab" if response.status == 206 else "wb"
                with part.open(mode) as out:
                    async for chunk in response.content.iter_chunked(ASSET_CHUNK):
                        out.write(chunk)
                        self.traffic.bytes_down += len(chunk)
        digest = hashlib.sha256()
        with part.open("rb") as done:
            for block in iter(lambda: done.read(1024 * 1024), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            part.unlink()  # corrupt: start again next time rather than resume garbage
            raise SyncError(422, "asset_checksum", f"asset {sha256[:12]} arrived corrupt; it will be fetched again")
        part.replace(target)
        return True
