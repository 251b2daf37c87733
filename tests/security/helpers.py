"""Helpers of the security tests (not a test module): staff headers, times relative to the
platform clock, CSV parsing as a spreadsheet would read it."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

from support.settings import TEST_ADMIN_TOKEN
from support.times import day_ahead, iso

from services.booking import domain as booking_domain

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


def at(day: date, hhmm: str) -> datetime:
    """`day` at `hhmm` Ljubljana time, as UTC."""
    return booking_domain.local_instant(day, booking_domain.parse_hhmm(hhmm)).astimezone(UTC)


def spreadsheet_rows(raw: bytes) -> list[list[str]]:
    """A CSV export as a Slovenian spreadsheet reads it: UTF-8 with BOM, `;`."""
    assert raw.startswith(b"\xef\xbb\xbf"), "no BOM: Excel would not read it as UTF-8"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""), delimiter=";"))


def runs_as_formula(cell: str) -> bool:
    """Would a spreadsheet evaluate this cell (a formula, not a plain number)?"""
    text = cell.lstrip(" ")
    if not text or text[0] not in FORMULA_START:
        return False
    return not text.lstrip("+-").replace(" ", "").replace(",", "").replace(".", "").isdigit()


# --------------------------------------------------------------------------------------
# The relay attacks (finding 2): a victim's contact in an anonymous request
# --------------------------------------------------------------------------------------
ROOM = "ks-primskovo"
VICTIM_PHONE = "+38641987654"
VICTIM_EMAIL = "zrtev@example.si"
PHISHING = "Vaš račun je zaklenjen. Odklenite na https://evil.example"
EVIL_NAME = "Banka NLB varnostna služba"


ROOM_FREE_EVENING = 3  # Thursday: ks-primskovo's KS office hours are Monday and Wednesday 17.00-19.00


def room_request(days: int, **overrides: Any) -> dict[str, Any]:
    """A request for 18.00-20.00 on the first Thursday at least `days` ahead that is no
    holiday: an evening without the room's KS office hours (booking migration 0002), whatever
    today is. (The first day of any kind was refused as office hours on some days of the week.)"""
    day = day_ahead(days, weekday=ROOM_FREE_EVENING)
    body = {
        "room_id": ROOM,
        "starts_at": iso(at(day, "18:00")),
        "ends_at": iso(at(day, "20:00")),
        "purpose": PHISHING,
        "name": EVIL_NAME,
        "email": VICTIM_EMAIL,
        "phone": VICTIM_PHONE,
        "attendees": 5,
    }
    body.update(overrides)
    return body


def texts_to(smtp_server, sms_gateway, email: str | None, phone: str | None) -> tuple[list[str], list[str]]:
    mails = [
        (m.message["Subject"] or "") + "\n" + (m.part("text/plain") or "") + (m.part("text/html") or "")
        for m in smtp_server.messages
        if email and email in m.rcpt_tos
    ]
    sms = [r.json["text"] for r in sms_gateway.requests if phone and r.json.get("to") == phone]
    return mails, sms
