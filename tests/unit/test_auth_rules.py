"""Pure rules of staff identity (no I/O): where a login may lead, which scopes a token or
an account may have, how the session cookie is read."""

from __future__ import annotations

import pytest

from shared.accounts import AccountError, check_password, check_scope
from shared.auth import Staff, _cookie
from shared.web import _safe_next


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/events/osebje/", "/events/osebje/"),
        ("/rooms/osebje/prosnje?done=odobri", "/rooms/osebje/prosnje?done=odobri"),
        ("//evil.example/", "/osebje"),
        ("/\t/evil.example", "/osebje"),  # browsers drop the tab: //evil.example
        ("/\\evil.example", "/osebje"),
        ("https://evil.example/", "/osebje"),
        ("javascript:alert(1)", "/osebje"),
        ("", "/osebje"),
        (None, "/osebje"),
    ],
)
def test_a_login_leads_only_to_a_path_on_this_site_else_to_the_staff_home(given: str | None, expected: str) -> None:
    assert _safe_next(given) == expected


def test_scopes_are_checked() -> None:
    assert check_scope("ks-staff", ["primskovo", "center", "primskovo"]) == ["center", "primskovo"]
    assert check_scope("admin", []) == []
    assert check_scope("organiser", ["*"]) == ["*"]
    with pytest.raises(AccountError, match="at least one KS"):
        check_scope("ks-staff", [])
    with pytest.raises(AccountError, match="unknown KS atlantida"):
        check_scope("organiser", ["atlantida"])
    with pytest.raises(AccountError, match="role must be one of"):
        check_scope("mayor", [])
    with pytest.raises(AccountError, match="vsaj 10 znakov"):
        check_password("kratko")


def test_ks_staff_act_only_for_their_ks() -> None:
    mojca = Staff(subject="mojca@kranj.si", role="ks-staff", ks=("primskovo",))
    assert mojca.may_act_for("primskovo") and not mojca.may_act_for("britof")
    assert Staff(subject="ana", role="admin").may_act_for("britof")


def test_the_session_cookie_is_read_from_the_header() -> None:
    assert _cookie("a=1; kranj_staff=kzs.abc; kranj_csrf=x", "kranj_staff") == "kzs.abc"
    assert _cookie("a=1", "kranj_staff") is None
    assert _cookie("", "kranj_staff") is None


def test_every_post_form_of_every_template_carries_its_csrf_token() -> None:
    """A form added without `{{ csrf_field() }}` would be refused with 403 for everyone."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    templates = [*root.glob("services/*/templates/**/*.html"), *root.glob("shared/web/templates/**/*.html")]
    missing = []
    for path in templates:
        text = path.read_text()
        for form in re.finditer(r"<form\b[^>]*>(.*?)</form>", text, re.S | re.I):
            if re.search(r'method="post"', form.group(0), re.I) and "csrf_field()" not in form.group(1):
                missing.append(f"{path.relative_to(root)}: {form.group(0)[:80]}")
    assert len(templates) > 10 and not missing, missing
