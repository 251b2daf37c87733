"""Personal survey invitations: one signed token per invited resident, shared by notify
(which makes them, for the link `…/surveys/{id}?t=<token>`) and surveys (which reads them
and lets each invitation answer once).

The token is `URLSafeSerializer(signing_key, salt="kranj.survey-invite.v1").dumps([survey_id,
invitee])`. `invitee` is an opaque string chosen by the inviter — notify uses
`invitee_for(settings, subscriber_id)`, a keyed hash, so the token and the surveys database
never hold a subscriber id or contact data. Tokens do not expire: a survey's closing time
ends them.
"""

from __future__ import annotations

import hashlib
import hmac

from itsdangerous import BadSignature, URLSafeSerializer

from .settings import Settings

SALT = "kranj.survey-invite.v1"
INVITEE_MAX = 200
TOKEN_MAX = 1000


def _serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.signing_key(), salt=SALT)


def make_invitation(settings: Settings, survey_id: str, invitee: str) -> str:
    """The `t` value of an invitation link: `f"{survey_url}?t={make_invitation(...)}"`."""
    if not survey_id or not invitee or len(invitee) > INVITEE_MAX:
        raise ValueError(f"survey_id and invitee (1–{INVITEE_MAX} characters) are required")
    return str(_serializer(settings).dumps([survey_id, invitee]))


def read_invitation(settings: Settings, token: str) -> tuple[str, str] | None:
    """`(survey_id, invitee)` of a genuine token; None when it is forged, altered or malformed."""
    if not token or len(token) > TOKEN_MAX:
        return None
    try:
        payload = _serializer(settings).loads(token)
    except (BadSignature, ValueError, UnicodeError):
        return None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not all(isinstance(part, str) and part for part in payload)
        or len(payload[1]) > INVITEE_MAX
    ):
        return None
    return payload[0], payload[1]


def invitee_for(settings: Settings, subscriber_id: str) -> str:
    """An opaque, stable invitee string for a subscriber (a keyed hash: not reversible
    without the secret key). What notify should put in invitations and compare with
    `answered_invitees` of `surveys.survey.closing-soon`."""
    digest = hmac.new(settings.signing_key().encode(), f"invitee|{subscriber_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


__all__ = ["SALT", "invitee_for", "make_invitation", "read_invitation"]
