"""Helpers for tests that talk to the provider simulators over loopback: a trace of what an
adapter's HTTP session sent (``Wire``), a server that collects the callbacks a simulator
delivers (``Receiver``), and a port held for an app that must know its address before it
listens (``HeldPort``). Shared so the Daraja and Airtel suites observe the wire the same way."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from pytest_aiohttp import AiohttpServer


@dataclass
class Wire:
    """Every request the adapter's session sent: (method, raw path), headers and JSON bodies."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    headers: list[CIMultiDict[str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def count(self, path: str, *, prefix: bool = False) -> int:
        """Requests to ``path`` (or, with ``prefix``, to any path below it)."""
        return sum(1 for _, sent in self.calls if sent == path or (prefix and sent.startswith(path)))

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def on_start(
            _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestStartParams
        ) -> None:
            self.calls.append((params.method, params.url.raw_path))
            self.headers.append(CIMultiDict(params.headers))

        async def on_chunk(
            _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestChunkSentParams
        ) -> None:
            self.bodies.append(json.loads(params.chunk))

        config.on_request_start.append(on_start)
        config.on_request_chunk_sent.append(on_chunk)
        return config


received_key = web.AppKey("received", list[bytes])


@dataclass
class Receiver:
    """A real HTTP server that keeps every body POSTed to its paths, in arrival order."""

    server: TestServer
    bodies: list[bytes]
    path: str

    @property
    def url(self) -> str:
        """The URL of its first path: what a simulator is told to call back."""
        return str(self.server.make_url(self.path))

    def json(self) -> list[Any]:
        return [json.loads(body) for body in self.bodies]


async def start_receiver(aiohttp_server: AiohttpServer, *paths: str, answer: Any = None) -> Receiver:
    """Serve ``paths`` on loopback, answering ``answer`` as JSON (or an empty 200)."""

    async def collect(request: web.Request) -> web.Response:
        request.app[received_key].append(await request.read())
        return web.json_response(answer) if answer is not None else web.Response(status=200)

    app = web.Application()
    app[received_key] = []
    for path in paths:
        app.router.add_post(path, collect)
    return Receiver(await aiohttp_server(app), app[received_key], paths[0])


class HeldPort:
    """A loopback port kept bound until the server that needs it is about to listen.

    An app that hands out its own callback URLs needs its port before it starts; a port
    picked and released at once (``unused_port``) can be taken by another test's server in
    between ("Address already in use"). Held, nobody else can bind it."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.number: int = self._socket.getsockname()[1]

    def release(self) -> int:
        """Free the port for the server about to listen on it."""
        self._socket.close()
        return self.number
