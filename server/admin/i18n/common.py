"""Kiswahili for the console's frame: menu, sign-in, dashboard, lists and errors."""

SW: dict[str, str] = {
    # Frame and menu
    "Console": "Dashibodi ya usimamizi",
    "Skip to content": "Ruka hadi maudhui",
    "Menu": "Menyu",
    "Language": "Lugha",
    "Change": "Badilisha",
    "Sign out": "Toka",
    "Dashboard": "Dashibodi",
    "Institutions": "Taasisi",
    "Users": "Watumiaji",
    "Learners": "Wanafunzi",
    "Courses": "Kozi",
    "Payments": "Malipo",
    "Ledger": "Leja",
    "Reconciliation": "Ulinganisho wa hesabu",
    "Suspense": "Malipo yasiyolinganishwa",
    "Refunds": "Marejesho ya pesa",
    "Subscriptions": "Usajili",
    "Notifications": "Arifa",
    "Edge nodes": "Seva za shule",
    "USSD analytics": "Takwimu za USSD",
    "Audit log": "Kumbukumbu za ukaguzi",
    "platform_admin": "msimamizi wa jukwaa",
    "institution_admin": "msimamizi wa shule",
    "instructor": "mwalimu",
    "learner": "mwanafunzi",
    # Sign-in
    "Sign in": "Ingia",
    "Username or phone": "Jina la mtumiaji au simu",
    "Password": "Nenosiri",
    "The form expired. Please sign in again.": "Fomu imepitwa na wakati. Tafadhali ingia tena.",
    "Enter your username and password.": "Weka jina la mtumiaji na nenosiri.",
    "Too many failed sign-ins. Wait a while and try again.": "Majaribio mengi yameshindwa. Subiri kidogo ujaribu tena.",
    "Wrong username or password.": "Jina la mtumiaji au nenosiri si sahihi.",
    "The console is for school staff. Learners use the app, USSD or SMS.": (
        "Dashibodi ni ya wafanyakazi wa shule. Wanafunzi hutumia programu, USSD au SMS."
    ),
    # Errors
    "Something is not right": "Kuna tatizo",
    "Go back": "Rudi nyuma",
    "The form was out of date or not sent from this console. Reload the page and try again.": (
        "Fomu imepitwa na wakati au haikutumwa kutoka dashibodi hii. Pakia ukurasa upya ujaribu tena."
    ),
    "This page needs another role.": "Ukurasa huu unahitaji jukumu lingine.",
    "Too many sign-in attempts from here. Wait a minute.": (
        "Majaribio mengi ya kuingia kutoka hapa. Subiri dakika moja."
    ),
    "Someone else changed this at the same moment. Nothing was saved; reload and try again.": (
        "Mtu mwingine amebadilisha hiki wakati huo huo. Hakuna kilichohifadhiwa; pakia upya ujaribu tena."
    ),
    "Something went wrong on our side. Nothing was saved; quote the request id when reporting it.": (
        "Hitilafu imetokea upande wetu. Hakuna kilichohifadhiwa; taja kitambulisho cha ombi unaporipoti."
    ),
    "Some fields need correcting; nothing was saved.": (
        "Baadhi ya sehemu zinahitaji kusahihishwa; hakuna kilichohifadhiwa."
    ),
    "Go back to the form: what you typed is still there.": "Rudi kwenye fomu: ulichoandika bado kipo.",
    # Lists
    "All": "Zote",
    "From": "Kuanzia",
    "To": "Hadi",
    "Search": "Tafuta",
    "Export CSV": "Pakua CSV",
    "Pages": "Kurasa",
    "First page": "Ukurasa wa kwanza",
    "Next page": "Ukurasa unaofuata",
    "Name": "Jina",
    "Status": "Hali",
    "Created": "Iliundwa",
    "Save": "Hifadhi",
    "Cancel": "Ghairi",
    "Delete": "Futa",
    "Yes": "Ndiyo",
    "No": "Hapana",
    "Never": "Kamwe",
    "Nothing found.": "Hakuna kilichopatikana.",
    "Saved.": "Imehifadhiwa.",
    # Dashboard
    "Active subscriptions": "Usajili unaoendelea",
    "Past due": "Imechelewa kulipwa",
    "In grace": "Katika muda wa neema",
    "Revenue today": "Mapato leo",
    "Revenue this month": "Mapato mwezi huu",
    "Failed payments today": "Malipo yaliyoshindwa leo",
    "Edge nodes out of sync for more than 24 hours": "Seva za shule ambazo hazijasawazisha kwa zaidi ya saa 24",
    "Last sync": "Usawazishaji wa mwisho",
    "Every edge node has synced in the last 24 hours.": "Kila seva ya shule imesawazisha ndani ya saa 24 zilizopita.",
}
