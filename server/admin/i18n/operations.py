"""Kiswahili for the console's operations pages: notification templates, the send log and
USSD analytics."""

SW: dict[str, str] = {
    # Templates
    "Event": "Tukio",
    "Channel": "Njia",
    "Edit": "Hariri",
    "Texts in use": "Maandishi yanayotumika",
    "Saved templates": "Violezo vilivyohifadhiwa",
    "Owner": "Mmiliki",
    "Text": "Maandishi",
    "Updated": "Ilisasishwa",
    "Subject": "Kichwa",
    "Platform default": "Chaguo-msingi la jukwaa",
    "This school": "Shule hii",
    "inactive": "haitumiki",
    "School's own": "Ya shule yenyewe",
    "Built-in text": "Maandishi ya mfumo",
    "No saved templates: every event uses its built-in text.": (
        "Hakuna violezo vilivyohifadhiwa: kila tukio linatumia maandishi ya mfumo."
    ),
    "Delete this template?": "Futa kiolezo hiki?",
    "Template deleted: the platform's or the built-in text applies again.": (
        "Kiolezo kimefutwa: maandishi ya jukwaa au ya mfumo yanatumika tena."
    ),
    # Editor and preview
    "Edit template": "Hariri kiolezo",
    "Variables this event fills (with the sample values the preview uses):": (
        "Vigezo ambavyo tukio hili hujaza (pamoja na mifano inayotumika kwenye onyesho):"
    ),
    "A language you leave unchanged keeps following the platform's text. SMS counts assume GSM-7 "
    "(160 characters, 153 a part); one character outside it makes the whole message UCS-2 (70, 67 a part).": (
        "Lugha usiyoibadilisha itaendelea kufuata maandishi ya jukwaa. Hesabu za SMS zinachukulia GSM-7 "
        "(herufi 160, 153 kwa kila sehemu); herufi moja nje yake hufanya ujumbe wote kuwa UCS-2 (70, 67 kwa sehemu)."
    ),
    "Preview": "Onyesho la awali",
    "Not saved:": "Haijahifadhiwa:",
    "Nothing changed.": "Hakuna kilichobadilika.",
    "Go back to the inherited text": "Rudi kwenye maandishi ya awali",
    "This text cannot be saved:": "Maandishi haya hayawezi kuhifadhiwa:",
    "Warning:": "Tahadhari:",
    "characters": "herufi",
    "SMS segments:": "Sehemu za SMS:",
    # Send log
    "Send log": "Kumbukumbu ya ujumbe uliotumwa",
    "Learner phone or email": "Simu ya mwanafunzi au barua pepe",
    "Learner": "Mwanafunzi",
    "Recipient": "Mpokeaji",
    "Attempts": "Majaribio",
    "Segments": "Sehemu",
    "Message": "Ujumbe",
    "Sent": "Imetumwa",
    "Waits until": "Inasubiri hadi",
    "sms": "SMS",
    "email": "barua pepe",
    "queued": "kwenye foleni",
    "sent": "imetumwa",
    "delivered": "imefika",
    "failed": "imeshindwa",
    "suppressed": "imezuiwa",
    # USSD analytics
    "Days are Nairobi days.": "Siku ni za saa za Nairobi.",
    "Only sessions dialled from your learners' phones are counted.": (
        "Ni vipindi vilivyopigwa kutoka simu za wanafunzi wako pekee vinavyohesabiwa."
    ),
    "Sessions": "Vipindi",
    "Completed": "Imekamilika",
    "Incomplete": "Haijakamilika",
    "Failed": "Imeshindwa",
    "Completion": "Ukamilishaji",
    "Average seconds a session": "Wastani wa sekunde kwa kipindi",
    "Average hops a session": "Wastani wa hatua kwa kipindi",
    "Average seconds": "Wastani wa sekunde",
    "Average hops": "Wastani wa hatua",
    "Sessions per day": "Vipindi kwa siku",
    "Day": "Siku",
    "Drop-off by screen": "Walioacha kwa kila skrini",
    "Where the sessions that did not succeed ended.": "Mahali vipindi visivyofaulu vilipoishia.",
    "Screen": "Skrini",
    "Share": "Sehemu",
    "Unknown": "Haijulikani",
}
