"""Every word a resident reads, rendered from Jinja2 templates per channel and language."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from shared import i18n
from shared.contracts import ALL_KS, ks_name
from shared.settings import Settings

from . import sms
from .models import Notice

MESSAGES = Path(__file__).parent / "templates" / "messages"
UNSUBSCRIBE_SALT = "kranj.unsubscribe.v1"
MANAGE_SALT = "kranj.manage.v1"


def from_label(ks: list[str]) -> str:
    if not ks or ALL_KS in ks:
        return "Mestna občina Kranj"
    if len(ks) == 1:
        return f"KS {ks_name(ks[0])}"
    return "KS " + ", ".join(ks_name(k) for k in ks)


def end_sentence(text: str) -> str:
    """`"Izklop vode"` -> `"Izklop vode."`; a title that already ends a sentence stays."""
    text = text.strip()
    return text if text[-1:] in ".!?…:" else f"{text}."


@dataclass(frozen=True)
class Email:
    subject: str
    text: str
    html: str


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
        )
        self.env.filters["datetime"] = i18n.format_datetime
        self.env.filters["span"] = i18n.format_span
        self.env.filters["sentence"] = end_sentence
        self.env.filters["date"] = i18n.format_date
        self.env.globals["plural"] = i18n.plural
        self._signer = URLSafeSerializer(settings.signing_key(), salt=UNSUBSCRIBE_SALT)
        # Not timed: a link in last year's email must still let the resident leave.
        self._manage_signer = URLSafeSerializer(settings.signing_key(), salt=MANAGE_SALT)

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
        base = self.settings.public_base("notify")
        return f"{base}/unsubscribe/{self.unsubscribe_token(subscriber_id, channel)}"

    def manage_token(self, subscriber_id: str) -> str:
        return self._manage_signer.dumps(subscriber_id)

    def read_manage_token(self, token: str) -> str | None:
        try:
            value = self._manage_signer.loads(token)
        except BadSignature:
            return None
        return value if isinstance(value, str) and value else None

    def manage_url(self, subscriber_id: str) -> str:
        return f"{self.settings.public_base('notify')}/manage/{self.manage_token(subscriber_id)}"

    def manage_url_for(self, unsubscribe_url: str | None) -> str | None:
        """The "manage my notices" link of the subscriber an unsubscribe link belongs to:
        every message that lets a follower leave also lets them change what they get."""
        if not unsubscribe_url or "/unsubscribe/" not in unsubscribe_url:
            return None
        target = self.read_unsubscribe_token(unsubscribe_url.rsplit("/unsubscribe/", 1)[1])
        return self.manage_url(target[0]) if target else None

    # -- messages ----------------------------------------------------------------------
    def _context(self, notice: Notice, unsubscribe_url: str | None) -> dict[str, object]:
        return {
            "notice": notice,
            "from_label": from_label(notice.ks),
            "unsubscribe_url": unsubscribe_url,
            "manage_url": self.manage_url_for(unsubscribe_url),
        }

    def email(self, notice: Notice, language: str, unsubscribe_url: str | None) -> Email:
        lang = language if language in i18n.LANGUAGES else "sl"
        ctx = self._context(notice, unsubscribe_url)
        subject_t, text_t, html_t = "email_subject.txt", "email.txt", "email.html"
        if notice.kind == "digest":  # a week of one KS's notices (services.notify.digest)
            from .digest import digest_context

            ctx.update(digest_context(notice))
            subject_t, text_t, html_t = "digest_subject.txt", "digest_body.txt", "digest_body.html"
        subject = self.env.get_template(f"{lang}/{subject_t}").render(ctx).strip()
        return Email(
            subject=" ".join(subject.split()),
            text=self.env.get_template(f"{lang}/{text_t}").render(ctx).strip() + "\n",
            html=self.env.get_template(f"{lang}/{html_t}").render(ctx),
        )

    def personal(self, template: str, language: str, **context: object) -> tuple[str, str]:
        """Title and body of a message to one person, from `messages/<lang>/<template>.txt`:
        the first line is the title, the rest the body."""
        lang = language if language in i18n.LANGUAGES else "sl"
        text = self.env.get_template(f"{lang}/{template}.txt").render(context).strip()
        title, _, body = text.partition("\n")
        return title.strip(), body.strip()

    def sms(self, notice: Notice, language: str, unsubscribe_url: str | None) -> str:
        return self.sms_info(notice, language, unsubscribe_url).text

    def sms_info(self, notice: Notice, language: str, unsubscribe_url: str | None) -> sms.SmsInfo:
        """The SMS text in its cheapest encoding, its body shortened at a word boundary when
        it would need more than `sms_max_segments` segments (the link leads to the rest)."""
        lang = language if language in i18n.LANGUAGES else "sl"
        template = self.env.get_template(f"{lang}/sms.txt")
        ctx = self._context(notice, unsubscribe_url)

        def render(body: str) -> str:
            return " ".join(template.render({**ctx, "body": body}).split())

        return sms.fit(render, notice.body, self.settings.sms_max_segments)
