"""Validation errors of a resident's or staff member's HTML form, in Slovenian.

A form post is validated by the same pydantic model as the JSON API; its errors are turned
into one readable sentence per wrong field (the field's own message from the page's table),
or, for errors of the whole form, by a phrase of pydantic's message (e.g. a model validator's
"give an email or a phone number") — never pydantic's English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

CHECK_INPUT = "Preverite vnesene podatke."


def form_errors(
    exc: ValidationError, fields: Mapping[str, str], by_message: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """One Slovenian message per problem, in order, without repeats: `fields` maps a field
    name to its message; `by_message` maps a phrase of the error text to a message for
    errors not tied to one field; anything else is "Preverite vnesene podatke."."""
    messages: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        text = fields.get(loc[0]) if loc else None
        if text is None:
            raw = str(err.get("msg", ""))
            text = next((sl for phrase, sl in by_message if phrase in raw), CHECK_INPUT)
        if text not in messages:
            messages.append(text)
    return messages
