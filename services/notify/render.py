"""Every word a resident reads, rendered from Jinja2 templates per channel and language."""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from itsdangerous import BadSignature, Signer, URLSafeSerializer
from itsdangerous.encoding import base64_encode, want_bytes
from itsdangerous.signer import HMACAlgorithm
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from shared import clock, i18n
from shared.contracts import ALL_KS, ks_name
from shared.settings import Settings

from . import sms
from .models import Notice
from .sms import SmsInfo

MESSAGES = Path(__file__).parent / "templates" / "messages"
# Stand-ins for one recipient's signed links while a notice's email is rendered once
# (`Renderer.email_renderer`); plain ASCII that no template escapes or changes.
UNSUBSCRIBE_MARK = "https://links.kranj.invalid/unsubscribe-mark-7f3a"
MANAGE_MARK = "https://links.kranj.invalid/manage-mark-7f3a"
# The same, for one notice's SMS (`Renderer.sms_renderer`): "¤" is one GSM-7 septet, so a
# mark as long as the link costs what the link costs.
SMS_MARK_CHAR = "¤"
UNSUBSCRIBE_SALT = "kranj.unsubscribe.v1"
MANAGE_SALT = "kranj.manage.v1"


def from_label(ks: list[str]) -> str:
    if not ks or ALL_KS in ks:
        return "Mestna občina Kranj"
    if len(ks) == 1:
        return f"KS {ks_name(ks[0])}"
    return "KS " + ", ".join(ks_name(k) for k in ks)


def relative_day(starts_at: datetime, lang: str = "sl") -> str:
    """When an event starts, seen from now (the platform clock) in Europe/Ljubljana:
    "danes" / "today", "jutri" / "tomorrow", or its date ("v soboto, 5. decembra 2026" /
    "on Saturday, 5 December 2026")."""
    days = (i18n.local(starts_at).date() - clock.local_now().date()).days
    if days == 0:
        return "danes" if lang == "sl" else "today"
    if days == 1:
        return "jutri" if lang == "sl" else "tomorrow"
    date = i18n.format_date(starts_at, lang)
    if lang != "sl":
        return f"on {date}"
    weekday, _, rest = date.partition(", ")
    return f"{SL_ON_WEEKDAY.get(weekday, weekday)}, {rest}"


SL_ON_WEEKDAY = {  # "v" with the accusative: "v ponedeljek", "v sredo", "v soboto"
    "ponedeljek": "v ponedeljek", "torek": "v torek", "sreda": "v sredo", "četrtek": "v četrtek",
    "petek": "v petek", "sobota": "v soboto", "nedelja": "v nedeljo",
}  # fmt: skip


def end_sentence(text: str) -> str:
    """`"Izklop vode"` -> `"Izklop vode."`; a title that already ends a sentence stays."""
    text = text.strip()
    return text if text[-1:] in ".!?…:" else f"{text}."


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str
    # What the email is written in (`Content-Language`, `<html lang>`): the notice's own
    # language (its title and body), not the recipient's, whose language only frames it.
    language: str = "sl"


def content_language(notice: Notice, frame: str) -> str:
    """The language an email of `notice` framed in `frame` is written in: a digest is the
    frame's own words; any other notice is its title and body, in the notice's language."""
    if notice.kind == "digest":
        return frame
    return notice.language if notice.language in i18n.LANGUAGES else frame


class _KeyOnceSigner(Signer):
    """itsdangerous' signer, its key derived once (the library derives it anew for every
    signature: an HMAC per link, two links per email of a fan-out) and its HMAC keyed once:
    each signature continues a copy of it (`hmac.HMAC.copy`), the same bytes as
    `HMACAlgorithm.get_signature`. Verifying is the library's own."""

    _derived: bytes | None = None
    _keyed: hmac.HMAC | None = None

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        if secret_key is not None:  # verifying with an older key (key rotation)
            return super().derive_key(secret_key)
        if self._derived is None:
            self._derived = super().derive_key()
        return self._derived

    def get_signature(self, value: str | bytes) -> bytes:
        if type(self.algorithm) is not HMACAlgorithm:
            return super().get_signature(value)
        if self._keyed is None:
            self._keyed = hmac.new(self.derive_key(), digestmod=self.algorithm.digest_method)
        mac = self._keyed.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class _LinkSerializer(URLSafeSerializer):
    """itsdangerous' URL-safe tokens without trying zlib on every one (a link's few bytes of
    JSON never shrink; a fan-out signs tens of thousands), signed by one signer whose key is
    derived once. `loads` is the library's own, so tokens of either form verify.

    What a link carries (a subscriber's id, with a channel) is written by orjson: the same
    compact UTF-8 JSON as the library's encoder, at a twentieth of its 1.5 µs, which was a
    tenth of a link's cost in an SMS fan-out (make bench, issue 20 §3). Anything else, or a
    string orjson will not write (a lone surrogate), goes through the library's encoder."""

    default_signer = _KeyOnceSigner

    def dump_payload(self, obj: object) -> bytes:
        if not self.serializer_kwargs and _plain_strings(obj):
            try:
                return base64_encode(orjson.dumps(obj))
            except orjson.JSONEncodeError:
                pass
        return base64_encode(self.serializer.dumps(obj, **self.serializer_kwargs).encode("utf-8"))

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        if salt is not None:
            return super().make_signer(salt)
        if (signer := self.__dict__.get("_signer")) is None:
            signer = self.__dict__["_signer"] = super().make_signer()
        return signer


def _plain_strings(obj: object) -> bool:
    """A str, or a list of str: what signed links carry."""
    return type(obj) is str or (type(obj) is list and all(type(item) is str for item in obj))


class Renderer:
    """Compiled templates (cached by Jinja2) and signed links."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env = Environment(
            loader=FileSystemLoader(str(MESSAGES)),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,  # the templates ship with the code: no stat() per message
        )
        self.env.filters["datetime"] = i18n.format_datetime
        self.env.filters["span"] = i18n.format_span
        self.env.filters["sentence"] = end_sentence
        self.env.filters["date"] = i18n.format_date
        self.env.globals["plural"] = i18n.plural
        self.env.filters["relative_day"] = relative_day
        self.env.filters["short_url"] = short_url
        self._signer = _LinkSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
        # Not timed: a link in last year's email must still let the resident leave.
        self._manage_signer = _LinkSerializer(settings.signing_key(), salt=MANAGE_SALT)
        # Where residents reach notify, for the personal links of every message (a link each)
        self._base = settings.public_base("notify")

    # -- signed links ------------------------------------------------------------------
    def unsubscribe_token(self, subscriber_id: str, channel: str) -> str:
        return self._signer.dumps([subscriber_id, channel])

    def read_unsubscribe_token(self, token: str) -> tuple[str, str] | None:
        try:
            value = self._signer.loads(token)
        except BadSignature:
            return None
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            return None
        return value[0], value[1]

    def unsubscribe_url(self, subscriber_id: str, channel: str) -> str:
        return f"{self._base}/unsubscribe/{self.unsubscribe_token(subscriber_id, channel)}"

    def manage_token(self, subscriber_id: str) -> str:
        return self._manage_signer.dumps(subscriber_id)

    def read_manage_token(self, token: str) -> str | None:
        try:
            value = self._manage_signer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) and value else None

    def manage_url(self, subscriber_id: str) -> str:
        return f"{self._base}/manage/{self.manage_token(subscriber_id)}"

    def manage_url_for(self, unsubscribe_url: str | None) -> str | None:
        """The "manage my notices" link of the subscriber an unsubscribe link belongs to:
        every message that lets a follower leave also lets them change what they get."""
        if not unsubscribe_url or "/unsubscribe/" not in unsubscribe_url:
            return None
        target = self.read_unsubscribe_token(unsubscribe_url.rsplit("/unsubscribe/", 1)[1])
        return self.manage_url(target[0]) if target else None

    # -- messages ----------------------------------------------------------------------
    def _context(self, notice: Notice, unsubscribe_url: str | None, lang: str) -> dict[str, object]:
        return {
            "notice": notice,
            "from_label": from_label(notice.ks),
            "unsubscribe_url": unsubscribe_url,
            "manage_url": self.manage_url_for(unsubscribe_url),
            "frame_lang": lang,
            "content_lang": content_language(notice, lang),
            **email_parts(notice),
        }

    def email(self, notice: Notice, language: str, unsubscribe_url: str | None, manage_url: str | None = None) -> Email:
        lang = language if language in i18n.LANGUAGES else "sl"
        ctx = self._context(notice, unsubscribe_url, lang)
        if manage_url and unsubscribe_url:
            ctx["manage_url"] = manage_url
        subject_t, text_t, html_t = "email_subject.txt", "email.txt", "email.html"
        if notice.kind == "digest":  # a week of one KS's notices (services.notify.digest)
            ctx.update(digest_context(notice))
            subject_t, text_t, html_t = "digest_subject.txt", "digest_body.txt", "digest_body.html"
        subject = self.env.get_template(f"{lang}/{subject_t}").render(ctx).strip()
        return Email(
            subject=" ".join(subject.split()),
            text=self.env.get_template(f"{lang}/{text_t}").render(ctx).strip() + "\n",
            html=self.env.get_template(f"{lang}/{html_t}").render(ctx),
            language=str(ctx["content_lang"]),
        )

    def email_renderer(self, notice: Notice, language: str) -> Callable[..., Email]:
        """`email(notice, language, unsubscribe_url)` for many recipients of one notice: the
        templates are rendered once, each recipient's signed links are put in by substitution
        (the same text as `email()`; a fan-out to thousands renders each template once)."""
        if notice.kind == "digest":  # one per KS and week: rendered per recipient, same signature
            return lambda unsubscribe_url, manage_url=None: self.email(notice, language, unsubscribe_url, manage_url)
        lang = language if language in i18n.LANGUAGES else "sl"
        rendered: dict[bool, Email] = {}

        def render(personal: bool) -> Email:
            if personal not in rendered:
                ctx = {
                    "notice": notice,
                    "from_label": from_label(notice.ks),
                    "unsubscribe_url": UNSUBSCRIBE_MARK if personal else None,
                    "manage_url": MANAGE_MARK if personal else None,
                    "frame_lang": lang,
                    "content_lang": content_language(notice, lang),
                    **email_parts(notice),
                }
                subject = self.env.get_template(f"{lang}/email_subject.txt").render(ctx).strip()
                rendered[personal] = Email(
                    subject=" ".join(subject.split()),
                    text=self.env.get_template(f"{lang}/email.txt").render(ctx).strip() + "\n",
                    html=self.env.get_template(f"{lang}/email.html").render(ctx),
                    language=content_language(notice, lang),
                )
            return rendered[personal]

        def for_recipient(unsubscribe_url: str | None, manage_url: str | None = None) -> Email:
            manage_url = manage_url or self.manage_url_for(unsubscribe_url)
            if unsubscribe_url is None or manage_url is None:
                return self.email(notice, language, unsubscribe_url)
            base = render(True)
            if UNSUBSCRIBE_MARK in base.subject or MANAGE_MARK in base.subject:
                return self.email(notice, language, unsubscribe_url)
            return Email(
                subject=base.subject,
                text=base.text.replace(UNSUBSCRIBE_MARK, unsubscribe_url).replace(MANAGE_MARK, manage_url),
                html=base.html.replace(UNSUBSCRIBE_MARK, str(escape(unsubscribe_url))).replace(
                    MANAGE_MARK, str(escape(manage_url))
                ),
                language=base.language,
            )

        return for_recipient

    def personal(self, template: str, language: str, **context: object) -> tuple[str, str]:
        """Title and body of a message to one person, from `messages/<lang>/<template>.txt`:
        the first line is the title, the rest the body."""
        lang = language if language in i18n.LANGUAGES else "sl"
        text = self.env.get_template(f"{lang}/{template}.txt").render(context).strip()
        title, _, body = text.partition("\n")
        return title.strip(), body.strip()

    def sms(self, notice: Notice, language: str, unsubscribe_url: str | None) -> str:
        return self.sms_info(notice, language, unsubscribe_url).text

    def sms_info(self, notice: Notice, language: str, unsubscribe_url: str | None) -> SmsInfo:
        """The SMS text in its cheapest encoding, its body shortened at a word boundary when
        it would need more than `sms_max_segments` segments (the link leads to the rest)."""
        lang = language if language in i18n.LANGUAGES else "sl"
        template = self.env.get_template(f"{lang}/sms.txt")
        body, action = self.sms_action(notice)
        ctx = {
            "notice": notice,
            "from_label": from_label(notice.ks),
            "unsubscribe_url": unsubscribe_url,
            "action": action,
            "more_url": None,
        }

        def render(body: str) -> str:
            return " ".join(template.render({**ctx, "body": body}).split())

        info = sms.fit(render, body, self.settings.sms_max_segments)
        more_url = self.notice_page_url(notice)
        if notice.url or more_url is None or info.text == sms.best_encoding(render(body)).text:
            return info  # whole, or it carries its own link to the rest
        # Shortened without a link of its own: it leads to the notice's own page.
        ctx["more_url"] = more_url
        return sms.fit(render, body, self.settings.sms_max_segments)

    def notice_page_url(self, notice: Notice) -> str | None:
        """The public page of a notice sent to followers (`/noticeboard/notices/{id}`,
        services.notify.board); personal messages and digests have none."""
        if notice.kind not in ("notice", "event", "survey"):
            return None
        return f"{self.settings.public_base('notify')}/noticeboard/notices/{notice.id}"

    def sms_action(self, notice: Notice) -> tuple[str, str | None]:
        """A personal message's body without its action paragraph (the one holding a short
        link, services.notify.links), and that paragraph: the SMS cut never removes it. An
        "add to calendar" line is left out (a file for an email's reader, not worth a segment)."""
        if notice.kind != "personal":
            return notice.body, None
        marker = self.settings.public_base("notify") + "/k/"
        paragraphs = re.split(r"\n\s*\n", notice.body)
        kept = [p for p in paragraphs if not _is_calendar_line(p)]  # the calendar file is for email
        for i in range(len(kept) - 1, -1, -1):
            if marker in kept[i]:
                rest = "\n\n".join(p for j, p in enumerate(kept) if j != i)
                return rest, " ".join(kept[i].split())
        return (notice.body if len(kept) == len(paragraphs) else "\n\n".join(kept)), None

    def sms_renderer(self, notice: Notice, language: str) -> Callable[[str | None], str]:
        """`sms(notice, language, unsubscribe_url)` for many recipients of one notice: the
        text is rendered and fitted once per length of link, with a mark as long as the
        link that costs the same septets, and each recipient's link put in its place."""
        fitted: dict[int, str | None] = {}
        without_link: list[str] = []  # the same text for every recipient with no link of their own

        def for_recipient(unsubscribe_url: str | None) -> str:
            if unsubscribe_url is None:
                if not without_link:
                    without_link.append(self.sms(notice, language, None))
                return without_link[0]
            if not sms.GSM7_BASIC.issuperset(unsubscribe_url):
                return self.sms(notice, language, unsubscribe_url)
            size = len(unsubscribe_url)
            if size not in fitted:
                mark = SMS_MARK_CHAR * size
                text = self.sms(notice, language, mark)
                fitted[size] = text if text.count(mark) == 1 and mark + SMS_MARK_CHAR not in text else None
            shortcut = fitted[size]
            if shortcut is None:  # the notice itself holds the mark: no shortcut
                return self.sms(notice, language, unsubscribe_url)
            return shortcut.replace(SMS_MARK_CHAR * size, unsubscribe_url)

        return for_recipient


def digest_context(notice: Notice) -> dict[str, Any]:
    """What the `digest_*` templates get from a digest notice's snapshot."""
    data = json.loads(notice.body)

    def parse(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    for item in data["events"]:
        item["starts_at"], item["ends_at"] = parse(item["starts_at"]), parse(item["ends_at"])
        # a snapshot from before 2026-12 has its one date and no `dates`
        item["dates"] = [(parse(a), parse(b)) for a, b in item.get("dates") or []] or [(item["starts_at"], item["ends_at"])]
        item.setdefault("later", 0)
    for item in data["notices"]:
        item["valid_until"] = parse(item["valid_until"])
    data["since"], data["until"] = parse(data["since"]), parse(data["until"])
    data["last_day"] = data["until"] - timedelta(days=1)
    data["scope_name"] = ks_name(data["scope"])
    data["city"] = data["scope"] == ALL_KS
    data["place_sl"] = "Mestni občini Kranj" if data["city"] else f"KS {data['scope_name']}"
    data["place_en"] = "the Municipality of Kranj" if data["city"] else f"KS {data['scope_name']}"
    data["fmt_date"] = i18n.format_date
    return data


# --------------------------------------------------------------------------------------
# The email's one action
# --------------------------------------------------------------------------------------
# A line of a message that is a link: "<label>: <address>" ("Potrdite prijavo: https://…").
# Personal messages (messages/<lang>/*.txt) end with their one action written so: the text
# part and the SMS say it as it is, the HTML part makes it a button with that label.
LINK_LINE = re.compile(r"^(?P<label>[^\s:/][^:/]{0,59}):[ \t]+(?P<url>https?://\S*[^\s.,;:!?)])$")
URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")
EVENT_PAGE = re.compile(r"^https?://\S+/events/[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Link:
    url: str
    label: str = ""  # empty: the template's words for the notice's own link (by kind)


def _is_calendar_line(paragraph: str) -> bool:
    found = LINK_LINE.match(paragraph.strip())
    return found is not None and _is_calendar(found["url"])


def _is_calendar(url: str) -> bool:
    return url.split("?", 1)[0].endswith(".ics")


def short_url(url: str) -> str:
    """What an HTML email shows of an address written in a message's text: its host and
    "/…" (a long signed address would widen a phone's screen); the link goes to all of it."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return host + ("/…" if len(url.split("://", 1)[-1]) > len(host) + 1 else "")


def _text_html(text: str) -> Markup:
    """Text with every address in it a link that shows `short_url`."""
    out, last = [], 0
    for found in URL.finditer(text):
        out.append(escape(text[last : found.start()]))
        url = found.group(0)
        out.append(Markup('<a href="{}">{}</a>').format(url, short_url(url)))
        last = found.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def email_parts(notice: Notice) -> dict[str, Any]:
    """What an email's HTML part shows of `notice`: its text as paragraphs with no bare long
    address (`body_html`), its one action (`action`: a message's last link line, or the
    notice's own link; a button), the other links (`links`, short labelled links), and an
    event's "add to calendar" file (`calendar_url`; `calendar_extra` when the text part
    does not say it already: an announced event's file, next to its page)."""
    if notice.kind == "digest":
        return {}
    paragraphs: list[Markup] = []
    lines_found: list[Link] = []
    calendar_url: str | None = None
    for paragraph in re.split(r"\n\s*\n", notice.body.strip()):
        kept = []
        for line in paragraph.splitlines():
            found = LINK_LINE.match(line.strip())
            if found and _is_calendar(found["url"]):
                calendar_url = calendar_url or found["url"]
            elif found:
                lines_found.append(Link(found["url"], found["label"].strip()))
            else:
                kept.append(_text_html(line))
        if kept:
            paragraphs.append(Markup("<br>\n").join(kept))
    own = Link(notice.url) if notice.url else None
    if notice.kind == "personal" and lines_found:
        action: Link | None = lines_found.pop()
    else:
        action, own = own, None
    links = lines_found + ([own] if own and own.url != (action.url if action else None) else [])
    calendar_extra = None
    if calendar_url is None and notice.kind == "event" and notice.url and EVENT_PAGE.match(notice.url):
        calendar_url = calendar_extra = notice.url + "/event.ics"  # the events service's file of the event
    return {
        "body_html": paragraphs,
        "action": action,
        "links": links,
        "calendar_url": calendar_url,
        "calendar_extra": calendar_extra,
    }
