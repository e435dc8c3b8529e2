"""A school's node on disk: its data directory, key, local secret, settings and database.

``data_dir/`` holds ``edge.db`` (SQLite, the same schema as the central server), ``node.key``
(the Ed25519 private key, mode 0600, never sent anywhere), ``secret`` (signs the logins made
at this node, so they are good here only) and ``assets/`` (lesson files by checksum).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from lms_domain.changefeed import NodeRole, SyncContext, install_change_capture
from lms_domain.changefeed.models import OutboxEntry, SyncState
from lms_domain.clock import Clock, SystemClock
from lms_domain.db import create_engine, make_sessionmaker
from lms_domain.errors import Conflict, InvalidInput
from server.migrate import upgrade
from server.settings import DatabaseSettings, SchedulerSettings, Settings
from sync import auth, state
from sync.client import SyncClient
from sync.runner import Activity, NodeDatabase


@dataclass(frozen=True)
class NodeFiles:
    data_dir: Path

    @property
    def database(self) -> Path:
        return self.data_dir / "edge.db"

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.database.resolve()}"

    @property
    def key(self) -> Path:
        return self.data_dir / "node.key"

    @property
    def secret(self) -> Path:
        return self.data_dir / "secret"

    @property
    def assets(self) -> Path:
        return self.data_dir / "assets"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(data)


def edge_settings(base: Settings, files: NodeFiles, node_id: uuid.UUID | None) -> Settings:
    """The central server's settings turned into a node's: its own database and secret,
    the edge role, no scheduled jobs (payments and messages stay central)."""
    secret = files.secret.read_text().strip() if files.secret.exists() else base.security.secret_key.get_secret_value()
    sync = base.sync.model_copy(update={"role": NodeRole.EDGE, "node_id": node_id or base.sync.node_id})
    return base.model_copy(
        update={
            "database": DatabaseSettings(url=files.database_url),
            "security": base.security.model_copy(update={"secret_key": SecretStr(secret)}),
            "sync": sync,
            "scheduler": SchedulerSettings(enabled=False),
        }
    )


@dataclass
class OpenNode:
    """A node's database handles and identity, for ``somo edge sync`` and the server."""

    db: NodeDatabase
    identity: state.Identity
    key: Ed25519PrivateKey
    files: NodeFiles
    engine: AsyncEngine


@asynccontextmanager
async def open_node(files: NodeFiles, *, clock: Clock | None = None) -> AsyncIterator[OpenNode]:
    """Two engines on the one file, sharing one writer lock: the learners' (foreign keys on)
    and the feed's (off; see ``lms_domain.db.create_engine``)."""
    if not files.key.exists() or not files.database.exists():
        raise InvalidInput(f"no node in {files.data_dir}: run somo edge init first", code="not_enrolled")
    key = auth.load_private_key(files.key.read_bytes())
    clock = clock or SystemClock()
    lock = asyncio.Lock()
    engine = create_engine(files.database_url, writer_lock=lock)
    apply_engine = create_engine(files.database_url, writer_lock=lock, foreign_keys=False, pool_size=1)
    try:
        install_change_capture()
        probe = make_sessionmaker(engine, SyncContext(node_id=uuid.uuid4(), role=NodeRole.EDGE, clock=clock))
        async with probe() as session:
            identity = await state.identity(session)
            floor = await _hlc_floor(session)
        if identity is None:
            raise InvalidInput(f"the node in {files.data_dir} never finished enrolling", code="not_enrolled")
        context = SyncContext(node_id=identity.node_id, role=NodeRole.EDGE, clock=clock)
        context.hlc.observe(floor)
        activity = Activity()
        # Every unit of work on the learners' engine (reads too) tells the sync to give way.
        event.listen(engine.sync_engine, "begin", lambda _conn: activity.touch())
        db = NodeDatabase(
            write=make_sessionmaker(engine, context),
            read=make_sessionmaker(engine, context, read_only=True),
            apply=make_sessionmaker(apply_engine, context),
            apply_read=make_sessionmaker(apply_engine, context, read_only=True),
            context=context,
            clock=clock,
            activity=activity,
        )
        yield OpenNode(db=db, identity=identity, key=key, files=files, engine=engine)
    finally:
        await apply_engine.dispose()
        await engine.dispose()


async def _hlc_floor(session: AsyncSession) -> int:
    """The highest version this database holds, so a clock set back never issues older ones."""
    from sync.policy import POLICIES, table

    floors = [await session.scalar(sa.select(sa.func.max(OutboxEntry.hlc))) or 0]
    for name in POLICIES:
        floors.append(await session.scalar(sa.select(sa.func.max(table(name).c.hlc))) or 0)
    return int(max(floors))


def client_for(node: OpenNode, http: aiohttp.ClientSession, *, timeout_s: float = 60.0) -> SyncClient:
    return SyncClient(http, node.identity.central_url, node_id=node.identity.node_id, key=node.key, timeout_s=timeout_s)


async def init_node(files: NodeFiles, *, central_url: str, code: str) -> state.Identity:
    """Create the key pair and the database, then enroll with the one-time code."""
    if files.database.exists() and files.key.exists():
        engine = create_engine(files.database_url)
        try:
            async with engine.connect() as conn:
                enrolled = await conn.scalar(sa.select(SyncState.key).where(SyncState.key == state.IDENTITY))
        finally:
            await engine.dispose()
        if enrolled:
            raise Conflict(f"{files.data_dir} already holds an enrolled node", code="already_enrolled")
    files.data_dir.mkdir(parents=True, exist_ok=True)
    if not files.key.exists():
        _write_private(files.key, auth.private_key_pem(auth.new_private_key()))
    if not files.secret.exists():
        _write_private(files.secret, secrets.token_urlsafe(48).encode())
    key = auth.load_private_key(files.key.read_bytes())
    await asyncio.to_thread(upgrade, files.database_url)
    async with aiohttp.ClientSession() as http:
        answer = await SyncClient(http, central_url).enroll(code, auth.public_key_text(key))
    identity = state.Identity(
        node_id=uuid.UUID(answer["node_id"]),
        institution_id=uuid.UUID(answer["institution_id"]),
        central_url=central_url.rstrip("/"),
        epoch=int(answer["epoch"]),
    )
    engine = create_engine(files.database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(SyncState).values(key=state.IDENTITY, value=identity.dump()))
    finally:
        await engine.dispose()
    return identity
