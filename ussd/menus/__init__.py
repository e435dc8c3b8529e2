"""Every screen of the USSD menu, by name (the name is what the session state stores)."""

from __future__ import annotations

from ussd.menus.account import (
    HomeScreen,
    LanguageScreen,
    ProgressScreen,
    RenewConfirmScreen,
    SubscriptionScreen,
)
from ussd.menus.entry import (
    PinScreen,
    ProfilesScreen,
    RegLanguageScreen,
    RegNameScreen,
    RegPinConfirmScreen,
    RegPinScreen,
    RegSchoolScreen,
    ResumeScreen,
    WelcomeScreen,
)
from ussd.menus.quiz import CoursesScreen, QuestionScreen, QuizzesScreen
from ussd.screens import Screen

SCREENS: dict[str, Screen] = {
    screen.name: screen
    for screen in (
        ResumeScreen(),
        ProfilesScreen(),
        PinScreen(),
        WelcomeScreen(),
        RegLanguageScreen(),
        RegSchoolScreen(),
        RegNameScreen(),
        RegPinScreen(),
        RegPinConfirmScreen(),
        HomeScreen(),
        CoursesScreen(),
        QuizzesScreen(),
        QuestionScreen(),
        ProgressScreen(),
        SubscriptionScreen(),
        RenewConfirmScreen(),
        LanguageScreen(),
    )
}
# Screens shown only after a PIN: a session state without a learner never reaches them.
NEEDS_LEARNER = frozenset(
    {"home", "courses", "quizzes", "question", "progress", "subscription", "renew_confirm", "language"}
)
