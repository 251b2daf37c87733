"""surveys: the needs-assessment template — the four questions of the source document's
workshops, a last question about taking part — and the consent a volunteer gives. Pure."""

from __future__ import annotations

from datetime import datetime

from shared.contracts.ks import ks_name

from .domain import OptionDef, QuestionDef, SurveyDefinition

NEEDS_QUESTION_IDS = ("need", "what", "existing", "who")
TAKE_PART_QUESTION = "take-part"
TAKE_PART_YES = "yes"

CONSENT_TEXT = (
    "Strinjam se, da mi krajevna skupnost in Mestna občina Kranj pišeta ali me pokličeta glede "
    "sodelovanja pri oživitvi skupnostnega prostora in mi pošiljata obvestila o anketah in dejavnostih "
    "v moji krajevni skupnosti. Privolitev lahko kadar koli prekličem."
)
CONSENT_TEXT_EN = (
    "I agree that the local community (KS) and the City of Kranj may write to me or call me about "
    "taking part in bringing the community space to life, and send me notices about surveys and activities "
    "in my local community. I can withdraw my consent at any time."
)


def consent_text(lang: str) -> str:
    return CONSENT_TEXT_EN if lang == "en" else CONSENT_TEXT


def needs_assessment(
    ks: str, *, title: str | None = None, opens_at: datetime | None = None, closes_at: datetime | None = None
) -> SurveyDefinition:
    """The four workshop questions of "Kranj ZA vse", in Slovenian, plus a final optional
    question about taking part (with contact fields)."""
    where = "v Mestni občini Kranj" if ks == "*" else f"v KS {ks_name(ks)}"
    where_en = "in the City of Kranj" if ks == "*" else f"in {ks_name(ks)}"
    return SurveyDefinition(
        ks=ks,
        title=title or f"Skupnostni prostor {where}: kaj potrebujemo?",
        title_en=None if title else f"A community space {where_en}: what do we need?",
        description_en=(
            "A community space works best when residents say what they need. The survey is short "
            "(about 3 minutes) and anonymous. Everyone aged 15 or over may answer."
        ),
        description=(
            "Skupnostni prostor najbolje zaživi, če krajani sami povemo, kaj potrebujemo. "
            "Anketa je kratka (približno 3 minute) in anonimna. Odgovorite lahko vsi, stari 15 let ali več."
        ),
        opens_at=opens_at,
        closes_at=closes_at,
        contact=True,
        questions=[
            QuestionDef(
                id="need",
                type="single",
                required=True,
                text="Ali v vaši krajevni skupnosti potrebujemo skupnostni prostor, kjer bi se krajani srečevali in družili?",
                text_en="Does your local community need a community space where residents can meet and spend time together?",
                options=[
                    OptionDef(id="yes", text="Da, potrebujemo ga", text_en="Yes, we need one"),
                    OptionDef(
                        id="maybe",
                        text="Mogoče, odvisno od tega, kaj bi se v njem dogajalo",
                        text_en="Maybe, depending on what would happen there",
                    ),
                    OptionDef(id="no", text="Ne, ne potrebujemo ga", text_en="No, we do not need one"),
                    OptionDef(id="dont-know", text="Ne vem", text_en="I don't know"),
                ],
            ),
            QuestionDef(
                id="what",
                type="multiple",
                required=True,
                text="Kakšen naj bo ta prostor? Kaj bi v njem potrebovali vi in vaši sosedje?",
                text_en="What should this space be like? What would you and your neighbours need there?",
                help="Izberete lahko več odgovorov.",
                help_en="You may choose more than one answer.",
                options=[
                    OptionDef(
                        id="intergenerational", text="Medgeneracijsko druženje", text_en="Meeting across generations"
                    ),
                    OptionDef(
                        id="workshops",
                        text="Delavnice in tečaji (ročna dela, računalnik, jeziki …)",
                        text_en="Workshops and courses (crafts, computers, languages …)",
                    ),
                    OptionDef(id="exercise", text="Vadba in gibanje", text_en="Exercise and movement"),
                    OptionDef(
                        id="culture",
                        text="Kulturni dogodki (branja, koncerti, razstave, filmski večeri)",
                        text_en="Cultural events (readings, concerts, exhibitions, film evenings)",
                    ),
                    OptionDef(
                        id="neighbour-help",
                        text="Pomoč sosedom in izmenjava (stvari, znanja, prevozov)",
                        text_en="Helping neighbours and sharing (things, skills, lifts)",
                    ),
                    OptionDef(id="youth", text="Prostor za mlade", text_en="A place for young people"),
                    OptionDef(
                        id="children",
                        text="Igralnica in dejavnosti za otroke",
                        text_en="A playroom and activities for children",
                    ),
                    OptionDef(
                        id="learning",
                        text="Učna pomoč in prostor za učenje",
                        text_en="Homework help and a place to study",
                    ),
                    OptionDef(
                        id="meeting",
                        text="Prostor za sestanke društev in pobud",
                        text_en="A meeting room for associations and initiatives",
                    ),
                    OptionDef(
                        id="advice",
                        text="Svetovanje in informacije (zdravje, sociala, digitalna pomoč)",
                        text_en="Advice and information (health, social care, digital help)",
                    ),
                ],
            ),
            QuestionDef(
                id="existing",
                type="text",
                text="Katere dejavnosti v vaši skupnosti že potekajo? Kaj bi lahko ponudili vi ali kdo, ki ga poznate?",
                text_en="Which activities already take place in your community? What could you, or someone you know, offer?",
                help="Na primer društvo, ki išče prostor, ali znanje, ki bi ga radi delili z drugimi.",
                help_en="For example an association looking for a room, or a skill you would like to share.",
            ),
            QuestionDef(
                id="who",
                type="multiple",
                text="Kdo bi prihajal in kako bi sodelovali?",
                text_en="Who would come, and how would you take part?",
                help="Izberete lahko več odgovorov.",
                help_en="You may choose more than one answer.",
                options=[
                    OptionDef(id="attend", text="Udeleževal(a) bi se dejavnosti", text_en="I would attend activities"),
                    OptionDef(
                        id="family",
                        text="Prihajal(a) bi z otroki ali vnuki",
                        text_en="I would come with my children or grandchildren",
                    ),
                    OptionDef(
                        id="lead",
                        text="Vodil(a) bi delavnico ali dejavnost",
                        text_en="I would lead a workshop or an activity",
                    ),
                    OptionDef(
                        id="organise",
                        text="Pomagal(a) bi pri organizaciji in urejanju prostora",
                        text_en="I would help organise and look after the space",
                    ),
                    OptionDef(
                        id="spread",
                        text="Povabil(a) bi sosede in širil(a) novice",
                        text_en="I would invite neighbours and spread the word",
                    ),
                    OptionDef(
                        id="not-now", text="Trenutno ne bi sodeloval(a)", text_en="I would not take part for now"
                    ),
                ],
            ),
            QuestionDef(
                id=TAKE_PART_QUESTION,
                type="single",
                text="Bi želeli sodelovati pri oživitvi prostora, da vas povabimo in obveščamo?",
                text_en="Would you like to help bring the space to life, so that we can invite you and keep you informed?",
                help="Če izberete »Da«, spodaj vpišite e-naslov ali telefon. Odgovori na anketo ostanejo anonimni.",
                help_en="If you choose “Yes”, enter an e-mail address or a phone number below. Your answers stay anonymous.",
                options=[
                    OptionDef(
                        id=TAKE_PART_YES,
                        text="Da, želim sodelovati – kontaktirajte me",
                        text_en="Yes, I would like to take part – contact me",
                    ),
                    OptionDef(id="no", text="Ne, hvala", text_en="No, thank you"),
                ],
            ),
        ],
    )
