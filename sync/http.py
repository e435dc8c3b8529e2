"""The central server's sync endpoints: a thin HTTP layer over ``feed``, ``receive`` and
the node registry. Everything a route decides is in those modules; this one reads headers
and bodies, authenticates, and shapes answers.

``/sync/v1/pull`` and ``/sync/v1/push`` accept two credentials: an edge node's token (scope:
its institution) or a learner's REST access token (scope: that learner, for a phone app).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.access import Actor
from lms_domain.changefeed import SyncContext
from lms_domain.clock import Clock
from lms_domain.courses.models import Asset
from lms_domain.errors import Gone, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from lms_domain.ids import natural_id
from lms_domain.platform import edge_nodes
from lms_domain.platform.models import EdgeNode
from lms_domain.tenancy.models import Role
from sync import auth, tombstones
from sync.codec import compress, dumps, inflate, loads
from sync.feed import read_batch
from sync.protocol import (
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_ROWS,
    MAX_BATCH_ROWS,
    MAX_PUSH_BYTES,
    PROTOCOL_VERSION,
    VERSION_HEADER,
    Cursor,
    SyncScope,
    protocol_headers,
)
from sync.receive import Receiver, parse_chunks

PREFIX = "/sync/v1"
# For web.Application(handler_args=...): the sync endpoints inflate request bodies themselves.
SERVER_HANDLER_ARGS = {"auto_decompress": False}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class CentralSync:
    """What the endpoints need, built once by the server's composition root."""

    sessionmaker: async_sessionmaker[AsyncSession]
    read_sessionmaker: async_sessionmaker[AsyncSession]
    context: SyncContext
    clock: Clock
    secret: str
    learner_of: Callable[[str], Actor]  # the REST access-token check, for phone apps
    asset_dir: Path
    batch_rows: int = DEFAULT_BATCH_ROWS
    batch_bytes: int = DEFAULT_BATCH_BYTES


def _json(document: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=dumps(document), status=status, content_type="application/json", headers=protocol_headers()
    )


def _check_version(request: web.Request) -> None:
    version = request.headers.get(VERSION_HEADER)
    if version != str(PROTOCOL_VERSION):
        raise InvalidInput(
            f"send {VERSION_HEADER}: {PROTOCOL_VERSION} (this server speaks version {PROTOCOL_VERSION})",
            code="protocol_unsupported",
        )


async def _body_json(request: web.Request, limit: int = 64 * 1024) -> Any:
    """The JSON body, at most ``limit`` bytes on the wire and inflated (gzip) with a ceiling.

    The server runs with aiohttp's request auto-decompression off (``SERVER_HANDLER_ARGS``):
    inflating here means a corrupt or truncated gzip body is a clean 422, not a parser error
    that drops the connection, and a small hostile body cannot expand without bound.
    """
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise InvalidInput("the body is too large", code="batch_too_large")
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        raw = inflate(raw, limit=8 * limit)
    return loads(raw)


def _field(document: Any, name: str) -> str:
    value = document.get(name) if isinstance(document, dict) else None
    if not isinstance(value, str) or not value or len(value) > 4096:
        raise InvalidInput(f"{name} is required", code="invalid_request")
    return value


def _uuid_field(document: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(_field(document, name))
    except ValueError:
        raise InvalidInput(f"{name} must be a UUID", code="invalid_request") from None


def device_node_id(learner_id: uuid.UUID) -> uuid.UUID:
    """The origin id of a learner's phone app: one writer per learner, whatever the handset."""
    return natural_id("learner-device", learner_id)


def _spare(node: EdgeNode | None, pushed: str | None) -> uuid.UUID | None:
    """An edge that says it holds all it pushed (``pushed=EPOCH.ACKED``, matching what it
    pushed here) is spared its own rows. A restored, copied or re-copying node (whose
    watermark is behind, or which sends none) gets them back like everyone else. Phones
    share one origin id per learner, so they are never spared."""
    if node is None or not pushed:
        return None
    epoch, _, acked = pushed.partition(".")
    if not (epoch.isdigit() and acked.isdigit()):
        raise InvalidInput("pushed is EPOCH.ACKED, two whole numbers", code="invalid_request")
    return node.id if (node.epoch, node.last_push_seq) == (int(epoch), int(acked)) else None


def sync_routes(deps_of: Callable[[web.Request], CentralSync]) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    async def scope_of(request: web.Request, deps: CentralSync, session: AsyncSession) -> SyncScope:
        return (await caller(request, deps, session))[0]

    async def caller(
        request: web.Request, deps: CentralSync, session: AsyncSession
    ) -> tuple[SyncScope, EdgeNode | None]:
        """The scope of the credential, and the edge node behind it (None for a phone)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send Authorization: Bearer <sync token>", code="invalid_token")
        token = token.strip()
        now = deps.clock.now()
        try:
            claims = auth.decode_token(token, deps.secret, now)
        except Unauthenticated as node_error:
            if node_error.code == "token_expired":
                raise
            actor = deps.learner_of(token)  # raises Unauthenticated for anything else
            if actor.role is not Role.LEARNER or actor.learner_id is None or actor.institution_id is None:
                raise PermissionDenied("phone sync is for learner logins", code="not_a_learner") from None
            return SyncScope(actor.institution_id, device_node_id(actor.learner_id), actor.learner_id), None
        node = await edge_nodes.active_node(session, claims.node_id)
        return SyncScope(node.institution_id, node.id), node

    @routes.post(PREFIX + "/enroll")
    async def enroll(request: web.Request) -> web.Response:
        """A new node uses its one-time code and leaves its public key."""
        _check_version(request)
        deps = deps_of(request)
        body = await _body_json(request)
        public_key = auth.check_public_key(_field(body, "public_key"))
        async with deps.sessionmaker() as session, session.begin():
            enrolled = await edge_nodes.enroll(
                session=session, code=_field(body, "code"), public_key=public_key, now=deps.clock.now()
            )
        return _json(
            {
                "node_id": str(enrolled.node_id),
                "institution_id": str(enrolled.institution_id),
                "epoch": enrolled.epoch,
            },
            status=201,
        )

    @routes.post(PREFIX + "/challenge")
    async def challenge(request: web.Request) -> web.Response:
        _check_version(request)
        deps = deps_of(request)
        node_id = _uuid_field(await _body_json(request), "node_id")
        async with deps.read_sessionmaker() as session:
            await edge_nodes.active_node(session, node_id)
        return _json({"nonce": auth.issue_nonce(deps.secret, node_id, deps.clock.now())})

    @routes.post(PREFIX + "/token")
    async def token(request: web.Request) -> web.Response:
        """A signed nonce buys a 15-minute token; ``expires_in`` is relative, so the node
        never needs its own clock to be right."""
        _check_version(request)
        deps = deps_of(request)
        body = await _body_json(request)
        node_id = _uuid_field(body, "node_id")
        nonce = _field(body, "nonce")
        now = deps.clock.now()
        auth.check_nonce(deps.secret, nonce, node_id, now)
        async with deps.read_sessionmaker() as session:
            node = await edge_nodes.active_node(session, node_id)
        if not node.public_key or not auth.verify(node.public_key, nonce, _field(body, "signature")):
            raise Unauthenticated("the signature does not match this node's key", code="invalid_signature")
        issued, expires_in = auth.issue_token(deps.secret, auth.NodeClaims(node.id, node.institution_id), now)
        return _json({"token": issued, "expires_in": expires_in, "epoch": node.epoch})

    @routes.get(PREFIX + "/pull")
    async def pull(request: web.Request) -> web.Response:
        _check_version(request)
        deps = deps_of(request)
        since = Cursor.parse(request.query.get("cursor"))
        try:
            limit = min(int(request.query.get("limit", deps.batch_rows)), MAX_BATCH_ROWS)
        except ValueError:
            raise InvalidInput("limit must be a whole number", code="invalid_request") from None
        if limit < 1:
            raise InvalidInput("limit must be 1 or more", code="invalid_request")
        async with deps.read_sessionmaker() as session:
            scope, node = await caller(request, deps, session)
            for feed, after in since.feeds(scope.institution_id):
                if await tombstones.expired(session, feed, after):
                    raise Gone(
                        "deletions older than this cursor were collected: copy afresh from cursor 0.0",
                        code="cursor_expired",
                    )
            spare = _spare(node, request.query.get("pushed"))
            batch = await read_batch(session, scope, since, max_rows=limit, max_bytes=deps.batch_bytes, spare=spare)
        if scope.learner_id is None:
            await _record_pull(deps, scope.node_id, since)
        body = compress(dumps(batch.document()))
        headers = {**protocol_headers(), "Content-Encoding": "gzip"}
        return web.Response(body=body, content_type="application/json", headers=headers)

    @routes.post(PREFIX + "/push")
    async def push(request: web.Request) -> web.Response:
        _check_version(request)
        deps = deps_of(request)
        document = await _body_json(request, MAX_PUSH_BYTES)
        if not isinstance(document, dict):
            raise InvalidInput("a push is a JSON object", code="malformed_batch")
        raw_numbers = {k: document.get(k) for k in ("epoch", "from_seq", "to_seq")}
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in raw_numbers.values()):
            raise InvalidInput("epoch, from_seq and to_seq must be whole numbers", code="malformed_batch")
        numbers: dict[str, int] = {k: int(v) for k, v in raw_numbers.items()}  # type: ignore[arg-type]
        digest = document.get("digest")
        if not isinstance(digest, str):
            raise InvalidInput("digest is required", code="malformed_batch")
        chunks = parse_chunks(document)  # all checking before any lock or write
        now = deps.clock.now()
        async with deps.sessionmaker() as session, session.begin():
            scope = await scope_of(request, deps, session)
            node = None
            if scope.learner_id is None:
                # Locked: one push per node at a time, and the range check sees the last ack.
                node = await edge_nodes.active_node(session, scope.node_id, for_update=True)
                if edge_nodes.check_push_range(
                    node,
                    epoch=numbers["epoch"],
                    from_seq=numbers["from_seq"],
                    to_seq=numbers["to_seq"],
                    digest=digest,
                ):
                    return _json({"acked": node.last_push_seq, "replayed": True})
            outcome = await Receiver(session, scope, deps.context, now).apply(chunks)
            if node is not None:
                node.last_push_from = numbers["from_seq"]
                node.last_push_seq = numbers["to_seq"]
                node.last_push_digest = digest
                node.rows_pushed += outcome.applied + outcome.unchanged
                node.rows_rejected += len(outcome.rejected)
                node.last_sync_at = now
        if outcome.max_hlc:
            deps.context.hlc.observe(outcome.max_hlc)
        return _json(outcome.document(numbers["to_seq"]))

    @routes.post(PREFIX + "/epoch")
    async def epoch(request: web.Request) -> web.Response:
        """A node whose database was restored or copied starts a new numbering."""
        _check_version(request)
        deps = deps_of(request)
        async with deps.sessionmaker() as session, session.begin():
            scope = await scope_of(request, deps, session)
            if scope.learner_id is not None:
                raise PermissionDenied("phones have no epochs", code="not_a_node")
            new = await edge_nodes.new_epoch(session, scope.node_id, deps.clock.now())
        return _json({"epoch": new})

    @routes.get(PREFIX + "/assets/{sha256}")
    async def asset(request: web.Request) -> web.StreamResponse:
        """A lesson file by checksum, with Range support, so an edge resumes a cut download."""
        deps = deps_of(request)
        sha = request.match_info["sha256"]
        if not _SHA256.match(sha):
            raise NotFound("no asset with that checksum")
        async with deps.read_sessionmaker() as session:
            scope = await scope_of(request, deps, session)
            path = await session.scalar(
                sa.select(Asset.file_path)
                .where(
                    Asset.checksum_sha256 == sha,
                    Asset.file_path.is_not(None),
                    Asset.deleted_at.is_(None),
                    sa.or_(Asset.institution_id.is_(None), Asset.institution_id == scope.institution_id),
                )
                .limit(1)
            )
        root = deps.asset_dir.resolve()
        target = (root / path).resolve() if path else None
        if target is None or not target.is_relative_to(root) or not target.is_file():
            raise NotFound("no asset with that checksum")
        return web.FileResponse(target, headers=protocol_headers())

    return routes


async def _record_pull(deps: CentralSync, node_id: uuid.UUID, since: Cursor) -> None:
    """What the node reports having applied: the admin's "last sync" and the tombstone
    collector's "everyone has seen it" both read it."""
    async with deps.sessionmaker() as session, session.begin():
        greatest = sa.func.greatest if session.get_bind().dialect.name == "postgresql" else sa.func.max
        await session.execute(
            sa.update(EdgeNode)
            .where(EdgeNode.id == node_id)
            .values(
                last_pull_seq=greatest(EdgeNode.last_pull_seq, since.institution),
                last_pull_catalog_seq=greatest(EdgeNode.last_pull_catalog_seq, since.catalog),
                last_sync_at=deps.clock.now(),
            )
        )
