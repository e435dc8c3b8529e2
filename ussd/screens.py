"""The parts every menu screen is made of.

A screen is a small unit with two methods: ``view`` says what to show (a header and numbered
items, or a closing text), ``answer`` says where one input leads. The engine owns everything
common: navigation keys, paging, fitting, the session store and idempotent hops, so a screen
can be tested by calling these two methods.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lms_domain.clock import Clock
from lms_domain.i18n import Language
from lms_domain.learning.summaries import QuizContent, quiz_content
from lms_domain.payments.ports import Gateways
from lms_domain.phones import Network
from lms_domain.security import Hasher
from ussd.session_store import Frame, SessionStore, UssdState
from ussd.texts import text

Spawn = Callable[[Awaitable[Any], str], None]


@dataclass(frozen=True, slots=True)
class Hop:
    """One request from the gateway, already parsed and validated."""

    session_id: str
    phone: str  # E.164
    network: Network | None
    service_code: str
    text: str


class QuizCache:
    """Quiz content for every learner, kept for a short while: questions and choices are
    catalogue rows that change rarely and carry no answers, so a question hop needs no
    database round trip. Edits show within ``ttl_s``."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, ttl_s: float = 60.0) -> None:
        self._sessions = sessions
        self._ttl = ttl_s
        self._items: dict[uuid.UUID, tuple[float, QuizContent]] = {}

    async def get(self, quiz_id: uuid.UUID) -> QuizContent:
        now = time.monotonic()
        hit = self._items.get(quiz_id)
        if hit is not None and hit[0] > now:
            return hit[1]
        async with self._sessions() as session:
            content = await quiz_content(session=session, quiz_id=quiz_id)
        self._items[quiz_id] = (now + self._ttl, content)
        return content


@dataclass(frozen=True)
class Deps:
    """What screens may use: the domain's units of work and ports, never HTTP."""

    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    store: SessionStore
    clock: Clock
    hasher: Hasher
    gateways: Gateways
    spawn: Spawn
    quizzes: QuizCache
    service_code: str
    sms_shortcode: str
    resume_ttl_s: float


@dataclass
class Ctx:
    deps: Deps
    hop: Hop
    state: UssdState
    # Store writes (key -> value and TTL) made with the session's own at the end of the hop, in
    # one round trip, and only if the hop succeeds.
    writes: dict[str, tuple[str, float]] = field(default_factory=dict)

    @property
    def language(self) -> Language:
        return self.state.language

    def t(self, key: str, **values: Any) -> str:
        return text(self.state.language, key, **values)

    def help_text(self) -> str:
        return self.t("help.text", code=self.deps.service_code, shortcode=self.deps.sms_shortcode)

    @property
    def learner_id(self) -> uuid.UUID:
        if self.state.learner_id is None:
            raise LookupError("no learner has entered a PIN in this session")
        return uuid.UUID(self.state.learner_id)


@dataclass(frozen=True, slots=True)
class View:
    """A menu (``header`` then numbered ``items``) or, with ``end``, the closing text."""

    header: str
    items: list[str] = field(default_factory=list)
    end: bool = False


@dataclass(frozen=True, slots=True)
class Go:
    """Show ``frame`` next: pushed (back returns here), or with ``reset`` as the new bottom of
    the stack (after logging in, say). ``notice`` is a line shown above it once."""

    frame: Frame
    reset: bool = False
    home_below: bool = False  # with reset: keep "home" under the frame, so 0 leads there
    notice: str = ""


@dataclass(frozen=True, slots=True)
class Stay:
    """Show the same screen again with a short line saying what was wrong."""

    notice: str


@dataclass(frozen=True, slots=True)
class End:
    text: str


Outcome = Go | Stay | End


class Screen(Protocol):
    name: ClassVar[str]
    free_text: ClassVar[bool]  # the input is typed text (a name, a PIN), not a menu choice

    async def view(self, ctx: Ctx, frame: Frame) -> View: ...

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome: ...


def choice(value: str, count: int) -> int | None:
    """The 0-based index a typed number picks among ``count`` options, or None."""
    if not (value.isascii() and value.isdigit()) or len(value) > 3:
        return None
    number = int(value)
    return number - 1 if 1 <= number <= count else None


def numbered(labels: list[str]) -> list[str]:
    return [f"{i}. {label}" for i, label in enumerate(labels, start=1)]


LANGUAGES = (Language.EN, Language.SW)  # as numbered on the "Choose language" screen


def language_choice(value: str) -> Language | None:
    picked = choice(value, len(LANGUAGES))
    return None if picked is None else LANGUAGES[picked]


class Prompt:
    """A screen that shows one catalogue text (``prompt``) and waits for an answer."""

    prompt: ClassVar[str]
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        return View(ctx.t(self.prompt))
