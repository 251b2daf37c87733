"""shared.invitations: the personal survey invitation token notify makes and surveys reads."""

from __future__ import annotations

from itsdangerous import URLSafeSerializer

from shared.invitations import SALT, invitee_for, make_invitation, read_invitation
from shared.settings import Settings

SETTINGS = Settings(secret_key="unit-test-secret-key-0123456789")
OTHER_KEY = Settings(secret_key="another-secret-key-9876543210")


def test_round_trip_and_the_documented_format():
    token = make_invitation(SETTINGS, "survey-1", "abc123")
    assert read_invitation(SETTINGS, token) == ("survey-1", "abc123")
    # The format is exactly itsdangerous' URLSafeSerializer with the documented salt.
    same = URLSafeSerializer(SETTINGS.signing_key(), salt=SALT).dumps(["survey-1", "abc123"])
    assert same == token and SALT == "kranj.survey-invite.v1"
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL query


def test_forged_altered_or_malformed_tokens_are_none():
    token = make_invitation(SETTINGS, "survey-1", "abc123")
    assert read_invitation(OTHER_KEY, token) is None  # signed with another key
    assert read_invitation(SETTINGS, token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    assert read_invitation(SETTINGS, "") is None and read_invitation(SETTINGS, "x" * 5000) is None
    other_salt = URLSafeSerializer(SETTINGS.signing_key(), salt="something-else").dumps(["survey-1", "abc123"])
    assert read_invitation(SETTINGS, other_salt) is None
    wrong_shape = URLSafeSerializer(SETTINGS.signing_key(), salt=SALT).dumps({"survey": "survey-1"})
    assert read_invitation(SETTINGS, wrong_shape) is None


def test_invitee_for_is_stable_opaque_and_keyed():
    a = invitee_for(SETTINGS, "subscriber-42")
    assert a == invitee_for(SETTINGS, "subscriber-42") != invitee_for(SETTINGS, "subscriber-43")
    assert "subscriber" not in a and len(a) == 32
    assert invitee_for(OTHER_KEY, "subscriber-42") != a
