"""Console sign-in sessions, kept server-side in the key-value store (Redis when configured).

The browser holds only an unguessable id in an HttpOnly cookie; the store holds who signed in,
the CSRF token and the language, under a hash of that id, so a store dump cannot be replayed as
cookies. Sessions expire after a stretch of idleness and absolutely after a working day.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field

from server.kv import KeyValueStore

COOKIE = "somo_admin"
IDLE_TTL_S = 2 * 3600
MAX_AGE_S = 12 * 3600
# Refresh the idle timer at most this often: a page view is then usually a read, not a write.
TOUCH_EVERY_S = 300


@dataclass
class AdminSession:
    id: str
    user_id: str
    username: str
    csrf: str
    lang: str = "en"
    created_at: float = field(default_factory=time.time)
    touched_at: float = field(default_factory=time.time)
    flashes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def user_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.user_id)


def _key(session_id: str) -> str:
    return "admin-session:" + hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class SessionStore:
    """Create, load, save and end console sessions."""

    def __init__(self, kv: KeyValueStore) -> None:
        self._kv = kv

    async def create(self, *, user_id: uuid.UUID, username: str, lang: str) -> AdminSession:
        # A fresh id at every sign-in: an id planted before sign-in is worth nothing after it.
        session = AdminSession(id=new_token(), user_id=str(user_id), username=username, csrf=new_token(), lang=lang)
        await self.save(session)
        return session

    async def load(self, session_id: str | None) -> AdminSession | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = await self._kv.get(_key(session_id))
        if raw is None:
            return None
        data = json.loads(raw)
        data["flashes"] = [tuple(f) for f in data.get("flashes", [])]
        session = AdminSession(**data)
        now = time.time()
        if now - session.created_at > MAX_AGE_S:
            await self.end(session)
            return None
        if now - session.touched_at > TOUCH_EVERY_S:
            session.touched_at = now
            await self.save(session)
        return session

    async def save(self, session: AdminSession) -> None:
        ttl = max(1.0, min(IDLE_TTL_S, MAX_AGE_S - (time.time() - session.created_at)))
        await self._kv.set(_key(session.id), json.dumps(asdict(session)), ttl_s=ttl)

    async def end(self, session: AdminSession) -> None:
        await self._kv.delete(_key(session.id))
