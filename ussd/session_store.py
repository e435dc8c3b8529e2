"""USSD session state: per ``sessionId`` for one dial (about 180 s, like the gateway's own
limit) and per phone for resuming a dropped quiz (10 minutes).

The store is Redis in a deployment with several processes and an in-process dictionary in
the embedded default; both satisfy ``SessionStore``. State is small JSON: what the menus
need between hops, never a database row, so a hop reads one key and writes one key.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field

from lms_domain.i18n import Language

RECENT_REPLIES = 4


class SessionStore(Protocol):
    async def get(self, key: str) -> str | None: ...

    async def set(self, key: str, value: str, *, ttl_s: float) -> None: ...

    async def set_if_absent(self, key: str, value: str, *, ttl_s: float) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def claim_and_get(self, claim: str, *, ttl_s: float, key: str) -> tuple[bool, str | None]: ...

    async def write(self, sets: Mapping[str, tuple[str, float]], deletes: Collection[str] = ()) -> None: ...


class Frame(BaseModel):
    """One screen on the navigation stack, with what it loaded (so paging and going back
    need no database) and the page shown."""

    screen: str
    args: dict[str, Any] = Field(default_factory=dict)
    page: int = 0


class QuizRun(BaseModel):
    """A quiz being taken: answers stay here until the last question, then the attempt is
    submitted through the domain flow with all of them, in one transaction."""

    attempt_id: str
    quiz_id: str
    answers: dict[str, str] = Field(default_factory=dict)  # question id -> choice id


class Resume(BaseModel):
    """What a redial within the resume window continues (the PIN is asked again)."""

    learner_id: str
    name: str
    language: Language
    quiz: QuizRun
    question: int  # 0-based index of the question to show
    total: int


class UssdState(BaseModel):
    language: Language = Language.EN
    learner_id: str | None = None
    learner_name: str = ""
    profiles: int = 0  # how many profiles dial from this phone (1+ offers "switch")
    stack: list[Frame] = Field(default_factory=list)
    last_text: str = ""
    replies: dict[str, str] = Field(default_factory=dict)  # the latest hops' text -> reply
    quiz: QuizRun | None = None
    scratch: dict[str, Any] = Field(default_factory=dict)  # registration answers
    last_screen: str = ""

    def remember(self, text: str, reply: str) -> None:
        self.replies[text] = reply
        while len(self.replies) > RECENT_REPLIES:
            del self.replies[next(iter(self.replies))]


def session_key(session_id: str) -> str:
    return f"ussd:s:{session_id}"


def resume_key(phone: str, learner_id: str) -> str:
    """Per phone and learner: on a shared phone, one learner's dropped quiz is never offered to,
    declined by or overwritten by another."""
    return f"ussd:r:{phone}:{learner_id}"


@dataclass
class HeldHop:
    """A session held for one hop: its state as stored when the hold began, and the writes the
    hop leaves (key -> value and TTL), stored together as the hold is released."""

    held: bool
    raw: str | None = None
    writes: dict[str, tuple[str, float]] = field(default_factory=dict)


@asynccontextmanager
async def hop_lock(store: SessionStore, session_id: str, *, wait_s: float, hold_s: float) -> AsyncIterator[HeldHop]:
    """Hold the session while one hop runs, so a gateway's repeat of a hop still running waits
    and then gets the stored reply instead of applying it twice. ``held`` is False if the lock
    could not be had in ``wait_s`` (the caller answers "busy").

    Two round trips to the store per hop: the hold and the state read together, then the hop's
    writes and the release together. A hop that raises writes nothing (its state and its resume
    record stay as they were) and only releases."""
    key = f"ussd:l:{session_id}"
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        claimed, raw = await store.claim_and_get(key, ttl_s=hold_s, key=session_key(session_id))
        if claimed:
            break
        if time.monotonic() >= deadline:
            yield HeldHop(held=False)
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    hold = HeldHop(held=True, raw=raw)
    try:
        yield hold
    except BaseException:
        hold.writes.clear()
        raise
    finally:
        try:
            await store.write(hold.writes, deletes=[key])
        except Exception:
            # The writes failed as a whole, the release with them: try the release alone, so a
            # gateway's retry of this hop is not kept waiting for the lock to expire.
            with contextlib.suppress(Exception):
                await store.delete(key)
            raise
