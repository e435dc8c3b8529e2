"""Who is dialling: resume a dropped quiz, choose a profile, enter the PIN, or register."""

from __future__ import annotations

import hashlib
import uuid
from typing import ClassVar

from lms_domain.clock import to_nairobi
from lms_domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from lms_domain.i18n import Language
from lms_domain.security import check_pin_format
from lms_domain.tenancy.phone_access import (
    Profile,
    check_pin,
    clean_display_name,
    hash_pin,
    profiles_on_phone,
    register_by_phone,
    school_for_registration,
)
from ussd.layout import clean
from ussd.screens import Ctx, End, Go, Outcome, Prompt, Stay, View, choice, language_choice, numbered
from ussd.session_store import Frame, Resume, resume_key


async def _profiles(ctx: Ctx) -> list[Profile]:
    async with ctx.deps.read_sessions() as session:
        profiles = await profiles_on_phone(session=session, e164=ctx.hop.phone)
    ctx.state.learner_id, ctx.state.learner_name, ctx.state.quiz = None, "", None
    ctx.state.profiles = len(profiles)
    if profiles:
        ctx.state.language = profiles[0].language
    return profiles


def _choose(profiles: list[Profile]) -> Frame:
    if not profiles:
        return Frame(screen="welcome")
    if len(profiles) == 1:
        only = profiles[0]
        return pin_frame(str(only.learner_id), only.display_name, only.language, has_pin=only.has_pin)
    return Frame(
        screen="profiles",
        args={"profiles": [[str(p.learner_id), clean(p.display_name), p.language.value, p.has_pin] for p in profiles]},
    )


async def entry_frame(ctx: Ctx) -> Frame:
    """The screen that asks who is dialling: their profiles, or registration for an unknown phone."""
    return _choose(await _profiles(ctx))


async def first_frame(ctx: Ctx) -> Frame:
    """The first screen of a dial: the offer to continue a quiz one of the phone's learners
    dropped within the resume window, else ``entry_frame``."""
    profiles = await _profiles(ctx)
    for profile in profiles:
        raw = await ctx.deps.store.get(resume_key(ctx.hop.phone, str(profile.learner_id)))
        if raw is None:
            continue
        try:
            saved = Resume.model_validate_json(raw)
        except ValueError:
            continue
        ctx.state.language = saved.language
        return Frame(screen="resume", args={"resume": saved.model_dump(mode="json")})
    return _choose(profiles)


def pin_frame(learner_id: str, name: str, language: Language, *, has_pin: bool = True, then: str = "home") -> Frame:
    """The PIN prompt for one profile; ``then`` is where a right PIN leads."""
    return Frame(
        screen="pin",
        args={
            "learner_id": learner_id,
            "name": clean(name),
            "language": language.value,
            "then": then,
            "has_pin": has_pin,
        },
    )


def login(ctx: Ctx, *, learner_id: str, name: str, language: Language) -> None:
    ctx.state.learner_id, ctx.state.learner_name, ctx.state.language = learner_id, name, language
    ctx.state.scratch = {}


class ResumeScreen:
    name: ClassVar[str] = "resume"
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        saved = Resume.model_validate(frame.args["resume"])
        return View(ctx.t("entry.resume", name=saved.name, number=saved.question + 1, total=saved.total))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        saved = Resume.model_validate(frame.args["resume"])
        picked = choice(value, 2)
        if picked == 0:
            next_frame = pin_frame(saved.learner_id, saved.name, saved.language, then="resume_quiz")
            next_frame.args["resume"] = frame.args["resume"]
            return Go(next_frame, reset=True)
        if picked == 1:
            # Not deleted yet: whoever holds a shared phone may decline someone else's quiz.
            # It goes once its owner logs in after declining (see PinScreen).
            ctx.state.scratch["declined_resume"] = saved.learner_id
            return Go(await entry_frame(ctx), reset=True)
        return Stay(ctx.t("error.choice"))


class ProfilesScreen:
    name: ClassVar[str] = "profiles"
    free_text: ClassVar[bool] = False

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        return View(ctx.t("entry.choose_profile"), numbered([p[1] for p in frame.args["profiles"]]))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        profiles = frame.args["profiles"]
        picked = choice(value, len(profiles))
        if picked is None:
            return Stay(ctx.t("error.choice"))
        learner_id, name, language, has_pin = profiles[picked]
        ctx.state.language = Language(language)
        return Go(pin_frame(learner_id, name, Language(language), has_pin=bool(has_pin)))


class PinScreen:
    name: ClassVar[str] = "pin"
    free_text: ClassVar[bool] = True

    async def view(self, ctx: Ctx, frame: Frame) -> View:
        if not frame.args.get("has_pin", True):
            return View(ctx.t("pin.none", name=frame.args["name"]), end=True)
        return View(ctx.t("pin.enter", name=frame.args["name"]))

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        args = frame.args
        result = await check_pin(
            sessions=ctx.deps.sessions,
            learner_id=uuid.UUID(args["learner_id"]),
            pin=value.strip(),
            hasher=ctx.deps.hasher,
            clock=ctx.deps.clock,
        )
        if result.locked_until is not None:
            until = to_nairobi(result.locked_until).strftime("%H:%M")
            return End(ctx.t("pin.locked", time=until))
        if not result.ok:
            return Stay(ctx.t("pin.wrong", tries=result.tries_left))
        declined = ctx.state.scratch.get("declined_resume")
        login(ctx, learner_id=args["learner_id"], name=args["name"], language=Language(args["language"]))
        if declined == args["learner_id"]:
            await ctx.deps.store.delete(resume_key(ctx.hop.phone, args["learner_id"]))
        if args.get("then") == "resume_quiz":
            from ussd.menus.quiz import resume_quiz

            return await resume_quiz(ctx, Resume.model_validate(args["resume"]))
        return Go(Frame(screen="home"), reset=True)


class WelcomeScreen(Prompt):
    """An unknown phone: register, or read the help."""

    name: ClassVar[str] = "welcome"
    prompt: ClassVar[str] = "register.welcome"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        picked = choice(value, 2)
        if picked == 0:
            return Go(Frame(screen="reg_language"))
        if picked == 1:
            return End(ctx.help_text())
        return Stay(ctx.t("error.choice"))


class RegLanguageScreen(Prompt):
    name: ClassVar[str] = "reg_language"
    prompt: ClassVar[str] = "language.choose"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        language = language_choice(value)
        if language is None:
            return Stay(ctx.t("error.choice"))
        ctx.state.language = language
        return Go(Frame(screen="reg_school"))


class RegSchoolScreen(Prompt):
    name: ClassVar[str] = "reg_school"
    free_text: ClassVar[bool] = True
    prompt: ClassVar[str] = "register.school"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        code = value.strip().upper()
        if not code.isalnum() or len(code) > 16:
            return Stay(ctx.t("register.school_unknown"))
        try:
            async with ctx.deps.read_sessions() as session:
                school = await school_for_registration(session=session, code=code)
        except NotFound:
            return Stay(ctx.t("register.school_unknown"))
        except PermissionDenied as refused:
            return End(ctx.t("register.ask_school", school=clean(str(refused.extra.get("school", code)))))
        ctx.state.scratch["school_code"], ctx.state.scratch["school"] = code, clean(school.name)
        return Go(Frame(screen="reg_name"))


class RegNameScreen(Prompt):
    name: ClassVar[str] = "reg_name"
    free_text: ClassVar[bool] = True
    prompt: ClassVar[str] = "register.name"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        try:
            ctx.state.scratch["name"] = clean(clean_display_name(value))
        except InvalidInput:
            return Stay(ctx.t("register.name_bad"))
        return Go(Frame(screen="reg_pin"))


def _pin_digest(ctx: Ctx, pin: str) -> str:
    """The first PIN is kept only as a digest salted by the session, to compare the second."""
    return hashlib.sha256(f"{ctx.hop.session_id}:{pin}".encode()).hexdigest()


class RegPinScreen(Prompt):
    name: ClassVar[str] = "reg_pin"
    free_text: ClassVar[bool] = True
    prompt: ClassVar[str] = "register.pin"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        try:
            check_pin_format(value.strip())
        except InvalidInput:
            return Stay(ctx.t("register.pin_bad"))
        ctx.state.scratch["pin_digest"] = _pin_digest(ctx, value.strip())
        return Go(Frame(screen="reg_pin_confirm"))


class RegPinConfirmScreen(Prompt):
    name: ClassVar[str] = "reg_pin_confirm"
    free_text: ClassVar[bool] = True
    prompt: ClassVar[str] = "register.pin_confirm"

    async def answer(self, ctx: Ctx, frame: Frame, value: str) -> Outcome:
        pin = value.strip()
        scratch = ctx.state.scratch
        if _pin_digest(ctx, pin) != scratch.get("pin_digest"):
            return Go(Frame(screen="reg_pin"), notice=ctx.t("register.pin_mismatch"))
        pin_hash = await hash_pin(pin, ctx.deps.hasher)
        try:
            async with ctx.deps.sessions() as session, session.begin():
                learner = await register_by_phone(
                    session=session,
                    e164=ctx.hop.phone,
                    school_code=scratch["school_code"],
                    display_name=scratch["name"],
                    language=ctx.state.language,
                    pin_hash=pin_hash,
                )
        except PermissionDenied:
            return End(ctx.t("register.ask_school", school=scratch.get("school", "")))
        except Conflict:
            return End(ctx.t("register.exists", name=scratch["name"]))
        except NotFound:
            return Go(Frame(screen="reg_school"), reset=True, notice=ctx.t("register.school_unknown"))
        school = scratch.get("school", "")
        login(ctx, learner_id=str(learner.id), name=scratch["name"], language=ctx.state.language)
        ctx.state.profiles += 1
        notice = ctx.t("register.done", name=ctx.state.learner_name, school=school)
        return Go(Frame(screen="home"), reset=True, notice=notice)
