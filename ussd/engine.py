"""The USSD menu engine: one hop in, one ``CON``/``END`` screen out.

AT sends ``text`` as every input of the session joined with ``*``, so navigation keys never
erase history. The engine keeps a navigation stack in the session state and applies only the
inputs it has not seen (the part of ``text`` after the last hop's), which makes a repeated
hop (the same ``sessionId`` and ``text``, as Safaricom is known to send) a replay of the
stored reply with no side effect. Whatever happens, the answer is a valid screen within
the length budget: errors and deadline misses end the session politely.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from lms_domain.errors import DomainError
from lms_domain.i18n import Language
from lms_domain.notifications.gsm import gsm7_length
from ussd.layout import HARD_CAP, fit, paginate
from ussd.menus import NEEDS_LEARNER, SCREENS
from ussd.menus.entry import entry_frame, first_frame
from ussd.screens import Ctx, Deps, End, Go, Hop, Outcome, Stay
from ussd.session_store import Frame, UssdState, hop_lock, session_key
from ussd.texts import text

log = logging.getLogger("somo.ussd")

BACK, HOME, MORE = "0", "00", "98"
NAV_KEYS = frozenset({BACK, HOME, MORE})
MAX_INPUTS_PER_HOP = 8  # a first hop may carry a dialled path; more than this is not a person


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    end: bool

    def render(self) -> str:
        return ("END " if self.end else "CON ") + self.text


def closing(language: Language, key: str) -> str:
    return Reply(text(language, key), end=True).render()


class UssdService:
    def __init__(self, deps: Deps, *, session_ttl_s: float = 180.0, deadline_s: float = 4.0) -> None:
        self.deps = deps
        self._ttl = session_ttl_s
        self._deadline = deadline_s

    async def handle(self, hop: Hop) -> str:
        """The screen for ``hop``, as the body of the gateway's ``text/plain`` reply. Never raises:
        a store that is down or a bug ends the session politely instead of a 500."""
        try:
            return await self._handle(hop)
        except Exception:
            log.exception("ussd hop failed", extra={"session_id": hop.session_id})
            return closing(Language.EN, "error.generic")

    async def _handle(self, hop: Hop) -> str:
        store = self.deps.store
        async with hop_lock(store, hop.session_id, wait_s=self._deadline, hold_s=self._deadline + 5) as hold:
            if not hold.held:
                return closing(Language.EN, "error.busy")
            raw = hold.raw
            state = self._load(raw)
            if state is not None and hop.text in state.replies:
                return state.replies[hop.text]
            language = state.language if state else Language.EN
            writes: dict[str, tuple[str, float]] = {}  # the screens' own, kept only if the hop succeeds
            try:
                async with asyncio.timeout(self._deadline):
                    state, reply = await self._advance(hop, state, writes)
                rendered = reply.render()
                if gsm7_length(rendered) != len(rendered) or len(rendered) > HARD_CAP:
                    raise ValueError(f"screen {state.last_screen!r} does not fit: {rendered!r}")
            except Exception as exc:
                # Remembered against the state as it was before this hop: a repeat of the hop (a
                # gateway retry) then gets this same END and cannot apply a side effect twice.
                log.log(
                    logging.WARNING if isinstance(exc, TimeoutError) else logging.ERROR,
                    "ussd hop failed",
                    extra={"session_id": hop.session_id, "error": repr(exc)[:300]},
                    exc_info=not isinstance(exc, TimeoutError),
                )
                rendered = closing(language, "error.generic")
                state = self._load(raw)
                if state is None:
                    return rendered
            else:
                hold.writes.update(writes)
            state.last_text = hop.text
            state.remember(hop.text, rendered)
            hold.writes[session_key(hop.session_id)] = (state.model_dump_json(), self._ttl)
            return rendered

    @staticmethod
    def _load(raw: str | None) -> UssdState | None:
        """The stored state, or None for none or one this version cannot read (a deploy changed
        its shape): such a session simply starts again at the entry screen."""
        if not raw:
            return None
        try:
            return UssdState.model_validate_json(raw)
        except ValueError:
            log.warning("unreadable ussd session state: starting afresh")
            return None

    async def last_screen(self, session_id: str) -> str | None:
        """The screen a session last showed, while its state lives (for end-of-session events)."""
        state = self._load(await self.deps.store.get(session_key(session_id)))
        return state.last_screen if state else None

    async def _advance(
        self, hop: Hop, state: UssdState | None, writes: dict[str, tuple[str, float]]
    ) -> tuple[UssdState, Reply]:
        if state is None:
            # A new session starts at the entry screen whatever ``text`` holds: a stale or
            # unknown sessionId must never replay inputs into a PIN prompt or a quiz.
            state = UssdState()
            ctx = Ctx(self.deps, hop, state, writes)
            state.stack = [await first_frame(ctx)]
            return state, await self._render(ctx, "")
        ctx = Ctx(self.deps, hop, state, writes)
        notice = ""
        for value in self._new_inputs(state, hop.text):
            outcome = await self._input(ctx, value.strip())
            if isinstance(outcome, End):
                state.last_screen = state.stack[-1].screen
                return state, Reply(fit(outcome.text), end=True)
            if isinstance(outcome, Go):
                self._go(state, outcome)
            notice = outcome.notice
        return state, await self._render(ctx, notice)

    def _new_inputs(self, state: UssdState, full_text: str) -> list[str]:
        """The inputs ``full_text`` adds to the last hop's. A free-text screen takes the whole
        addition as one input (a name may hold ``*``); a text that does not extend the last
        one (a gateway that resets it) counts only its last segment."""
        seen = state.last_text
        if seen and full_text.startswith(seen + "*"):
            added = full_text[len(seen) + 1 :]
        elif not seen:
            added = full_text
        else:
            added = full_text.rsplit("*", 1)[-1]
        screen = SCREENS.get(state.stack[-1].screen) if state.stack else None
        if screen is not None and screen.free_text and added not in NAV_KEYS:
            return [added]
        return added.split("*")[:MAX_INPUTS_PER_HOP]

    async def _input(self, ctx: Ctx, value: str) -> Outcome:
        state = ctx.state
        frame = state.stack[-1]
        if value == HOME:
            if state.learner_id is not None:
                state.stack = [Frame(screen="home")]
            else:
                del state.stack[1:]
            return Stay("")
        if value == BACK:  # at the bottom of the stack there is nowhere to go: show it again
            if len(state.stack) > 1:
                state.stack.pop()
            return Stay("")
        if value == MORE:
            frame.page += 1
            return Stay("")
        screen = SCREENS[frame.screen]
        if frame.screen in NEEDS_LEARNER and state.learner_id is None:
            state.stack = [await entry_frame(ctx)]
            return Stay("")
        try:
            return await screen.answer(ctx, frame, value)
        except DomainError as exc:
            log.info("ussd input refused", extra={"screen": frame.screen, "code": exc.code})
            return Stay(ctx.t("error.choice"))

    @staticmethod
    def _go(state: UssdState, outcome: Go) -> None:
        outcome.frame.page = 0
        if outcome.reset:
            state.stack = [Frame(screen="home"), outcome.frame] if outcome.home_below else [outcome.frame]
        else:
            state.stack.append(outcome.frame)

    async def render(self, ctx: Ctx, notice: str = "") -> Reply:
        """The screen the session's current frame shows, laid out and paged exactly as a
        phone gets it; the admin console's USSD preview renders questions through this."""
        return await self._render(ctx, notice)

    async def _render(self, ctx: Ctx, notice: str) -> Reply:
        state = ctx.state
        frame = state.stack[-1]
        state.last_screen = frame.screen
        view = await SCREENS[frame.screen].view(ctx, frame)
        if view.end:
            return Reply(fit(view.header), end=True)
        nav = []
        if len(state.stack) > 1:
            nav.append(ctx.t("nav.back"))
        if state.learner_id is not None and frame.screen != "home":
            nav.append(ctx.t("nav.home"))
        page = paginate(
            header=view.header,
            items=view.items,
            nav=nav,
            more_label=ctx.t("nav.more"),
            page=frame.page,
            notice=notice,
        )
        frame.page = page.number
        return Reply(page.body, end=False)
