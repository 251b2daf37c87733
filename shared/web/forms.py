"""Validation errors of a resident's or staff member's HTML form, in Slovenian.

A form post is validated by the same pydantic model as the JSON API; its errors are turned
into one readable sentence per wrong field (the field's own message from the page's table),
or, for errors of the whole form, by a phrase of pydantic's message (e.g. a model validator's
"give an email or a phone number") — never pydantic's English.

`field_errors` keeps which field each message belongs to (`Errors`: the id of the field's
input -> its message, in the order of the form), for the GOV.UK error pattern that every
form page follows (shared/web/templates/_forms.html): an error summary at the top of the
page linking to each field, the message above the field, `aria-invalid` on it. A form posts
to its action with `#napake` (ERROR_ANCHOR), the id of the summary: after a failed submit the
browser scrolls to the summary and moves focus to it, without JavaScript. (A successful
submit's redirect keeps the fragment — browsers carry it over to a Location without one —
and the next page has no such id: nothing moves.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

CHECK_INPUT = "Preverite vnesene podatke."
ERROR_ANCHOR = "napake"  # the id of the error summary; forms post to `<action>#napake`

# (phrase of pydantic's message, Slovenian message) or (phrase, message, field id)
ByMessage = Sequence[tuple[str, str] | tuple[str, str, str]]


# Where a form's success lands: the forms post to `…#napake` (the error summary takes the
# focus without script), and a redirect without a fragment of its own keeps the request's
# (RFC 9110 10.2.2). The success page's own anchor is its main content.
LANDING = "#vsebina"


class Errors(dict[str, str]):
    """The errors of one form: the id of each wrong field's input -> its message, in the
    order they were added (put them in the order of the form). Falsy when there are none."""

    def add(self, field: str, message: str) -> None:
        """Another problem with `field`: a second message follows the first (never repeated)."""
        have = self.get(field)
        if have is None:
            self[field] = message
        elif message not in have:
            self[field] = f"{have} {message}"

    @property
    def messages(self) -> list[str]:
        return list(self.values())

    def ordered(self, order: Iterable[str]) -> Errors:
        """The same errors in the order of `order` (the form's fields); others after them."""
        order = list(order)
        rank = {name: i for i, name in enumerate(order)}
        return Errors(sorted(self.items(), key=lambda item: rank.get(item[0], len(order))))


def field_errors(
    exc: ValidationError,
    fields: Mapping[str, str],
    by_message: ByMessage = (),
    *,
    ids: Mapping[str, str] | None = None,
    default_field: str | None = None,
) -> Errors:
    """The errors of `exc` by field, in Slovenian. `fields` maps a model field to its
    message (and gives the order of the form); `by_message` maps a phrase of the error text
    of an error not tied to one field to a message, and optionally to the field it concerns
    (else `default_field`, else the first of `fields`); anything else is CHECK_INPUT.
    `ids` maps a model field to the id of its input where the two differ."""
    ids = ids or {}
    fallback = default_field or next(iter(fields), "")
    errors = Errors()
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[0] if loc else None
        if name is not None and name in fields:
            errors.add(ids.get(name, name), fields[name])
            continue
        raw = str(err.get("msg", ""))
        for entry in by_message:
            if entry[0] in raw:
                field = entry[2] if len(entry) == 3 else fallback
                errors.add(ids.get(field, field), entry[1])
                break
        else:
            errors.add(ids.get(name or fallback, name or fallback), CHECK_INPUT)
    return errors.ordered(ids.get(f, f) for f in fields)


def form_errors(exc: ValidationError, fields: Mapping[str, str], by_message: ByMessage = ()) -> list[str]:
    """One Slovenian message per problem, in order, without repeats: `fields` maps a field
    name to its message; `by_message` maps a phrase of the error text to a message for
    errors not tied to one field; anything else is "Preverite vnesene podatke."."""
    messages: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        text = fields.get(loc[0]) if loc else None
        if text is None:
            raw = str(err.get("msg", ""))
            text = next((entry[1] for entry in by_message if entry[0] in raw), CHECK_INPUT)
        if text not in messages:
            messages.append(text)
    return messages


# ======================================================================================
# Destructive actions ask once (shared/web/templates/confirm.html)
# ======================================================================================
CONFIRM_FIELD = "potrdi"
CONFIRM_VALUE = "da"


def confirmed(form: Mapping[str, Any]) -> bool:
    """Whether a destructive form was sent from its confirmation page (`potrdi=da`). Its
    first post (the button on the page before) only shows what will follow."""
    return form.get(CONFIRM_FIELD) == CONFIRM_VALUE


@dataclass(frozen=True)
class Confirmation:
    """The one question a destructive action asks before it is done (GOV.UK: say what will
    happen, then "Yes, …" and a way back): `title` is the page's heading, `follows` what
    will follow in plain sentences, `action` where "yes" posts (with `potrdi=da`), `back`
    the page the "Ne, nazaj" link returns to. `reason` keeps a reason field's value (None:
    the action takes no reason)."""

    title: str
    follows: list[str]
    action: str
    yes: str
    back: str
    reason: str | None = None
    reason_label: str = ""

    def page(self, templates: Any, request: Any, status_code: int = 200) -> Any:
        """The confirmation page (confirm.html) as a response."""
        return templates.TemplateResponse(request, "confirm.html", {"confirm": self}, status_code=status_code)
