"""The words of the public form and thank-you page, in Slovenian (the default) and English.
Question texts come from the survey itself (`text` / `text_en`)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.contracts.age import AGE_BAND_LABELS_EN

LANGUAGES = ("sl", "en")
DEFAULT = "sl"

UI: dict[str, dict[str, str]] = {
    "sl": {
        "city": "Mestna občina Kranj",
        "ks": "Krajevna skupnost",
        "until": "odgovori do",
        "results": "Rezultati ankete",
        "answered": (
            "Na to anketo ste s te naprave že odgovorili. Hvala! Če želi odgovoriti še kdo iz vašega "
            "gospodinjstva, naj jo izpolni na svoji napravi ali na papirju v prostorih krajevne skupnosti."
        ),
        "answered_invitation": "S tem osebnim vabilom ste na anketo že odgovorili. Hvala!",
        "invitation_invalid": (
            "Povezava iz vabila ni veljavna (morda je nepopolna). Anketo lahko vseeno izpolnite spodaj."
        ),
        "invited": "Izpolnjujete anketo s svojim osebnim vabilom. Odgovori ostanejo anonimni.",
        "check_one": "Preverite odgovor",
        "check_many": "Preverite odgovore",
        "required_note": "Vprašanja, označena z zvezdico (*), so obvezna. Vsa druga lahko izpustite.",
        "required": "obvezno",
        "show_if": "Odgovorite, če ste pri vprašanju »{question}« izbrali »{option}«.",
        "scale_hint": "1 pomeni »sploh ne«, 5 pomeni »zelo«.",
        "contact_legend": "Kontakt za sodelovanje (neobvezno)",
        "contact_hint": (
            "Izpolnite le, če želite, da vas povabimo k sodelovanju. Kontakt pošljemo službi za obveščanje, "
            "ločeno od vaših odgovorov: ti ostanejo anonimni."
        ),
        "name": "Ime (neobvezno)",
        "email": "E-naslov",
        "phone": "Mobilni telefon (za SMS)",
        "age_legend": "Vaša starost (neobvezno)",
        "age_hint": "Tako vemo, ali smo slišali vse generacije.",
        "ks_label": "Vaša krajevna skupnost (neobvezno)",
        "ks_none": "— ne želim povedati —",
        "submit": "Oddaj anketo",
        "print": "Različica za tisk",
        "print_hint": "(za izpolnjevanje na papirju)",
        "switch": "English",
        "switch_lang": "en",
        "thanks_title": "Hvala za vaše odgovore!",
        "thanks_body": "Vaši odgovori na anketo »{title}« so shranjeni. Skupaj z odgovori sosedov bodo pomagali, "
        "da bo skupnostni prostor{where} zaživel tako, kot ga potrebujemo.",
        "thanks_share": "Povejte za anketo še sosedom, posebej mladim in tistim, ki na delavnice ne morejo priti.",
        "all_surveys": "Vse ankete",
        "err_required": "Odgovor je obvezen.",
        "err_consent": "Za sodelovanje potrebujemo vašo privolitev: označite polje spodaj.",
        "err_contact_missing": "Vpišite e-naslov ali telefonsko številko, da vas lahko povabimo.",
        "err_phone": "Telefonska številka ni veljavna (npr. 040 123 456).",
        "err_email": "E-naslov ni veljaven (npr. ime.priimek@gmail.com).",
        "err_contact": "Preverite kontaktne podatke.",
        "err_age_band": "Izberite starostno skupino s seznama.",
        "err_ks": "Izberite krajevno skupnost s seznama.",
        "err_other": "Preverite odgovor.",
    },
    "en": {
        "city": "City of Kranj",
        "ks": "Local community",
        "until": "answers until",
        "results": "Survey results",
        "answered": (
            "You have already answered this survey on this device. Thank you! If someone else in your household "
            "would like to answer, they can use their own device or a paper copy at the local community office."
        ),
        "answered_invitation": "You have already answered this survey with your personal invitation. Thank you!",
        "invitation_invalid": "The link in your invitation is not valid (it may be incomplete). You can still answer below.",
        "invited": "You are answering with your personal invitation. Your answers stay anonymous.",
        "check_one": "Please check your answer",
        "check_many": "Please check your answers",
        "required_note": "Questions marked with an asterisk (*) are required. You may skip all the others.",
        "required": "required",
        "show_if": "Answer if you chose “{option}” for the question “{question}”.",
        "scale_hint": "1 means “not at all”, 5 means “very much”.",
        "contact_legend": "Contact details for taking part (optional)",
        "contact_hint": (
            "Fill in only if you would like us to invite you to take part. Your contact details go to the "
            "notification service separately from your answers, which stay anonymous."
        ),
        "name": "Name (optional)",
        "email": "E-mail address",
        "phone": "Mobile phone (for SMS)",
        "age_legend": "Your age (optional)",
        "age_hint": "This tells us whether we have heard every generation.",
        "ks_label": "Your local community (optional)",
        "ks_none": "— I prefer not to say —",
        "submit": "Send my answers",
        "print": "Printable version",
        "print_hint": "(to fill in on paper, in Slovenian)",
        "switch": "Slovensko",
        "switch_lang": "sl",
        "thanks_title": "Thank you for your answers!",
        "thanks_body": "Your answers to the survey “{title}” have been saved. Together with your neighbours' answers "
        "they will help the community space{where} become what we need.",
        "thanks_share": "Please tell your neighbours about the survey, especially young people and those who cannot "
        "come to workshops.",
        "all_surveys": "All surveys",
        "err_required": "An answer is required.",
        "err_consent": "We need your consent to contact you: tick the box below.",
        "err_contact_missing": "Enter an e-mail address or a phone number so that we can invite you.",
        "err_phone": "The phone number is not valid (e.g. 040 123 456).",
        "err_email": "The e-mail address is not valid (e.g. name.surname@gmail.com).",
        "err_contact": "Please check your contact details.",
        "err_age_band": "Choose an age group from the list.",
        "err_ks": "Choose a local community from the list.",
        "err_other": "Please check your answer.",
    },
}

AGE_LABELS_EN = {**AGE_BAND_LABELS_EN, "unknown": "age not given"}


def choose_language(query: str | None, accept_language: str | None) -> str:
    """`?lang=` when it names one of ours; else the first of ours in Accept-Language
    (by q-value); else Slovenian."""
    if query in LANGUAGES:
        return query
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else DEFAULT


def ui(lang: str) -> Mapping[str, str]:
    return UI.get(lang, UI[DEFAULT])
