"""Every learner-facing text of the phone channels (USSD screens and SMS replies), in English
and Kiswahili, in one catalogue.

A Python table rather than gettext files: the texts are few, each must fit a 160-character
screen with its variables filled, and a test renders every key in both languages and checks
its length and GSM-7 alphabet, which is simpler against one table than against .po files.
Only characters of the GSM-7 basic set are used (no smart quotes, no accents), because one
character outside it halves what a screen or an SMS can hold.
"""

from __future__ import annotations

from typing import Any

from lms_domain.i18n import Language

MESSAGES: dict[str, tuple[str, str]] = {
    # --- navigation ---------------------------------------------------------------------
    "nav.back": ("0 Back", "0 Rudi"),
    "nav.home": ("00 Home", "00 Mwanzo"),
    "nav.more": ("98 More", "98 Zaidi"),
    "error.choice": ("Invalid choice.", "Chaguo si sahihi."),
    "error.generic": (
        "Sorry, something went wrong. Please try again.",
        "Samahani, kuna hitilafu. Tafadhali jaribu tena.",
    ),
    "error.busy": ("Sorry, Somo is busy. Please dial again.", "Samahani, Somo ina shughuli nyingi. Piga tena."),
    "error.phone": ("Sorry, we could not read your phone number.", "Samahani, hatukuweza kusoma nambari yako ya simu."),
    # --- who is dialling --------------------------------------------------------------------
    "entry.choose_profile": ("Welcome to Somo. Who is learning?", "Karibu Somo. Nani anasoma?"),
    "entry.resume": (
        "{name}, you left a quiz at question {number} of {total}.\n1. Continue\n2. Start again",
        "{name}, uliacha jaribio kwenye swali {number} kati ya {total}.\n1. Endelea\n2. Anza upya",
    ),
    "pin.enter": ("{name}, enter your 4-digit PIN:", "{name}, weka PIN yako ya tarakimu 4:"),
    "pin.wrong": ("Wrong PIN. {tries} tries left.", "PIN si sahihi. Majaribio {tries} yamebaki."),
    "pin.locked": (
        "Too many wrong PINs. Try again after {time}, or ask your school to reset your PIN.",
        "PIN imekosewa mara nyingi. Jaribu tena baada ya saa {time}, au omba shule ibadilishe PIN yako.",
    ),
    "pin.none": (
        "{name} has no PIN yet. Ask your school to set one.",
        "{name} hana PIN bado. Omba shule yako ikuwekee PIN.",
    ),
    "register.welcome": (
        "Welcome to Somo. This phone is not registered.\n1. Register\n2. Help",
        "Karibu Somo. Simu hii haijasajiliwa.\n1. Jisajili\n2. Msaada",
    ),
    "register.school": ("Enter your school code:", "Weka nambari ya shule yako:"),
    "register.school_unknown": ("No school has that code.", "Hakuna shule yenye nambari hiyo."),
    "register.ask_school": (
        "{school} registers its learners itself. Please ask your school to add this phone.",
        "{school} husajili wanafunzi wake yenyewe. Tafadhali omba shule iongeze simu hii.",
    ),
    "register.name": ("Enter your name:", "Weka jina lako:"),
    "register.name_bad": ("Please use letters.", "Tafadhali tumia herufi."),
    "register.pin": ("Choose a 4-digit PIN:", "Chagua PIN ya tarakimu 4:"),
    "register.pin_bad": ("A PIN is 4 digits.", "PIN ni tarakimu 4."),
    "register.pin_confirm": ("Enter the PIN again:", "Weka PIN tena:"),
    "register.pin_mismatch": ("The PINs differ.", "PIN hazilingani."),
    "register.exists": (
        "{name} is already registered on this phone. Dial again and enter your PIN.",
        "{name} amesajiliwa tayari kwenye simu hii. Piga tena na uweke PIN yako.",
    ),
    "register.done": (
        "Welcome {name}! You are registered at {school}.",
        "Karibu {name}! Umesajiliwa {school}.",
    ),
    # --- home ------------------------------------------------------------------------------
    "home.title": ("Somo: {name}", "Somo: {name}"),
    "home.quiz": ("Take a quiz", "Fanya jaribio"),
    "home.progress": ("My progress", "Maendeleo yangu"),
    "home.subscription": ("Subscription", "Usajili"),
    "home.language": ("Language", "Lugha"),
    "home.help": ("Help", "Msaada"),
    "home.switch": ("Switch learner", "Badilisha mwanafunzi"),
    # --- quizzes -----------------------------------------------------------------------------
    "quiz.courses": ("Choose a course:", "Chagua kozi:"),
    "quiz.no_courses": (
        "You are not enrolled in any course yet. Ask your school.",
        "Bado hujasajiliwa kwenye kozi yoyote. Uliza shule yako.",
    ),
    "quiz.quizzes": ("{course}: choose a quiz:", "{course}: chagua jaribio:"),
    "quiz.no_quizzes": ("This course has no quizzes yet.", "Kozi hii haina majaribio bado."),
    "quiz.question": ("Q{number}/{total}: {prompt}", "S{number}/{total}: {prompt}"),
    "quiz.result_pass": (
        "Score: {score}/{max} ({percent}%). You passed {quiz}!",
        "Alama: {score}/{max} ({percent}%). Umefaulu {quiz}!",
    ),
    "quiz.result_fail": (
        "Score: {score}/{max} ({percent}%). Pass mark {pass_mark}%. Dial again to retry {quiz}.",
        "Alama: {score}/{max} ({percent}%). Alama ya kufaulu {pass_mark}%. Piga tena kurudia {quiz}.",
    ),
    "quiz.certificate": (" Certificate code: {code}", " Nambari ya cheti: {code}"),
    "quiz.no_attempts": ("You have no attempts left for this quiz.", "Huna majaribio yaliyobaki kwa jaribio hili."),
    "quiz.locked": (
        "This course needs a subscription or another course first.",
        "Kozi hii inahitaji usajili au kozi nyingine kwanza.",
    ),
    "quiz.gone": ("This quiz is no longer available.", "Jaribio hili halipatikani tena."),
    # --- progress ----------------------------------------------------------------------------
    "progress.title": ("My progress:", "Maendeleo yangu:"),
    "progress.none": ("No courses yet. Ask your school.", "Hakuna kozi bado. Uliza shule yako."),
    "progress.line": ("{course}: {percent}% done", "{course}: {percent}% imekamilika"),
    "progress.scores": (", quizzes {scores}", ", majaribio {scores}"),
    "progress.cert": (", cert {code}", ", cheti {code}"),
    # --- subscription --------------------------------------------------------------------------
    "sub.none": (
        "You have no subscription. Ask your school about Somo Premium.",
        "Huna usajili. Uliza shule yako kuhusu Somo Premium.",
    ),
    "sub.choose": ("Choose a subscription:", "Chagua usajili:"),
    "sub.detail": (
        "{product}\nStatus: {status}\nUntil: {until}\nPrice: KES {amount}/{interval}",
        "{product}\nHali: {status}\nHadi: {until}\nBei: KES {amount}/{interval}",
    ),
    "sub.renew": ("Renew now", "Lipia sasa"),
    "sub.confirm": (
        "Pay KES {amount} for {product} from {phone} with {provider}?\n1. Yes\n2. No",
        "Lipa KES {amount} kwa {product} kutoka {phone} kwa {provider}?\n1. Ndiyo\n2. Hapana",
    ),
    "sub.prompt": (
        "You will get an {provider} prompt to enter your PIN.",
        "Utapokea ombi la {provider} kuweka PIN yako.",
    ),
    "sub.pending": (
        "An {provider} prompt was already sent. Check your phone.",
        "Ombi la {provider} limeshatumwa. Angalia simu yako.",
    ),
    "sub.wait": (
        "Please wait 2 minutes before asking for another prompt.",
        "Tafadhali subiri dakika 2 kabla ya kuomba ombi jingine.",
    ),
    "sub.cancelled": ("Renewal cancelled. Nothing was charged.", "Umeghairi. Hakuna pesa iliyotozwa."),
    "sub.not_renewable": (
        "This subscription cannot be renewed here. Ask your school.",
        "Usajili huu hauwezi kulipiwa hapa. Uliza shule yako.",
    ),
    "status.active": ("Active", "Hai"),
    "status.past_due": ("Payment due", "Malipo yanadaiwa"),
    "status.grace": ("Payment due (grace)", "Malipo yanadaiwa (muda wa ziada)"),
    "status.unpaid": ("Ended, unpaid", "Imekwisha, haijalipwa"),
    "status.cancelled": ("Cancelled", "Imesitishwa"),
    "interval.month": ("month", "mwezi"),
    "interval.year": ("year", "mwaka"),
    "interval.week": ("week", "wiki"),
    "interval.day": ("day", "siku"),
    "interval.one_time": ("once", "mara moja"),
    # --- language and help -------------------------------------------------------------------
    "language.choose": ("Choose language:\n1. English\n2. Kiswahili", "Chagua lugha:\n1. English\n2. Kiswahili"),
    "help.text": (
        "Somo: learn on any phone. Dial {code} for quizzes, progress and payments. "
        "SMS HELP to {shortcode}. Forgot your PIN? Ask your school.",
        "Somo: jifunze kwa simu yoyote. Piga {code} kwa majaribio, maendeleo na malipo. "
        "Tuma MSAADA kwa {shortcode}. Umesahau PIN? Uliza shule yako.",
    ),
    # --- SMS replies -----------------------------------------------------------------------------
    "sms.help": (
        "Somo: reply PROGRESS for your progress, QUIZ to learn how to take a quiz, RENEW to pay, "
        "STOP to end messages. Dial {code}.",
        "Somo: jibu MAENDELEO kuona maendeleo, JARIBIO kujua jinsi ya kufanya jaribio, LIPA kulipia, "
        "SIMAMISHA kusitisha ujumbe. Piga {code}.",
    ),
    "sms.quiz": ("To take a quiz, dial {code} and choose 1.", "Kufanya jaribio, piga {code} uchague 1."),
    "sms.unknown_phone": (
        "This phone is not registered with Somo. Dial {code} to register.",
        "Simu hii haijasajiliwa na Somo. Piga {code} kujisajili.",
    ),
    "sms.choose_profile": (
        "Several learners use this phone. Reply {options}.",
        "Wanafunzi kadhaa wanatumia simu hii. Jibu {options}.",
    ),
    "sms.no_such_profile": (
        "There is no learner number {number} on this phone. Reply HELP.",
        "Hakuna mwanafunzi nambari {number} kwenye simu hii. Jibu MSAADA.",
    ),
    "sms.progress_none": ("{name}: no courses yet.", "{name}: hakuna kozi bado."),
    "sms.renew_started": (
        "{name}: you will get an {provider} prompt for KES {amount}. Enter your PIN to pay.",
        "{name}: utapokea ombi la {provider} la KES {amount}. Weka PIN yako kulipa.",
    ),
    "sms.renew_pending": (
        "{name}: a payment prompt was already sent. Check your phone.",
        "{name}: ombi la malipo limeshatumwa. Angalia simu yako.",
    ),
    "sms.renew_wait": (
        "{name}: please wait 2 minutes before asking for another prompt.",
        "{name}: tafadhali subiri dakika 2 kabla ya kuomba ombi jingine.",
    ),
    "sms.renew_none": ("{name}: there is no subscription to renew.", "{name}: hakuna usajili wa kulipia."),
    "sms.renew_failed": (
        "{name}: we could not start the payment. Please try again later.",
        "{name}: hatukuweza kuanzisha malipo. Tafadhali jaribu tena baadaye.",
    ),
    "sms.stopped": (
        "You will get no more Somo messages. Reply START to receive them again.",
        "Hutapokea ujumbe wa Somo tena. Jibu ANZA kupokea tena.",
    ),
    "sms.started": (
        "Somo messages are on again. Reply STOP to end them.",
        "Ujumbe wa Somo umewashwa tena. Jibu SIMAMISHA kusitisha.",
    ),
}


def text(language: Language, key: str, **values: Any) -> str:
    """The catalogue text for ``key`` in ``language``, with ``values`` filled in."""
    en, sw = MESSAGES[key]
    template = sw if language is Language.SW else en
    return template.format(**values) if values else template
