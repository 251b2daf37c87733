"""Finding 6: formula injection in CSV exports.

A resident registers for an event as `=HYPERLINK("http://x","y")`; a room is named
`+cmd|' /C calc'!A0`. Staff download the attendee list and the room-use figures and open
them in a spreadsheet: nothing may run. Every export goes through the one CSV writer
(shared.web.csv_export): UTF-8 with BOM, `;`, a leading apostrophe on any text a
spreadsheet would read as a formula (also `-`, `@`, tab and line-break starts), plain
numbers (phone numbers, decimal commas) left as they are."""

from __future__ import annotations

import pytest

from security.helpers import ADMIN, at, day_ahead, runs_as_formula, spreadsheet_rows

pytestmark = pytest.mark.integration

HYPERLINK = '=HYPERLINK("http://x","y")'
CALC = "+cmd|' /C calc'!A0"
HOSTILE_NAMES = [
    HYPERLINK,
    CALC,
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
]


def assert_no_formula(rows: list[list[str]]) -> None:
    dangerous = [cell for row in rows for cell in row if runs_as_formula(cell)]
    assert dangerous == [], f"cells a spreadsheet would run as formulas: {dangerous}"


async def test_attendee_list_keeps_hostile_names_as_text(services):
    async with services("events") as events:
        client = events.client
        day = day_ahead(10)
        event = {
            "ks": "primskovo",
            "title": "Delavnica peke kruha",
            "starts_at": at(day, "17:00").isoformat(),
            "ends_at": at(day, "19:00").isoformat(),
            "venue": "Dom KS Primskovo",
            "capacity": 30,
        }
        created = await client.post("/api/v1/events", json=event, headers=ADMIN)
        assert created.status_code == 201, created.text
        event_id = created.json()["id"]
        published = await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)
        assert published.json()["status"] == "published", published.text
        for n, name in enumerate(HOSTILE_NAMES):
            registered = await client.post(
                f"/api/v1/events/{event_id}/registrations",
                json={"name": name, "email": f"krajan{n}@example.si", "phone": f"040 123 45{n}"},
            )
            assert registered.status_code == 201, registered.text

        staff = await events.staff("ks-staff", ["primskovo"])
        exported = await client.get(f"/api/v1/events/{event_id}/registrations.csv", headers=staff)
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        rows = spreadsheet_rows(exported.content)
        assert rows[0][:4] == ["zap. št.", "ime in priimek", "e-pošta", "telefon"]
        names = [row[1] for row in rows[1:]]
        assert sorted(names) == sorted("'" + name for name in HOSTILE_NAMES)  # shown as typed, never run
        assert "+38640123450" in [row[3] for row in rows[1:]]  # a phone number is a number, kept
        assert_no_formula(rows)


async def test_room_figures_keep_a_hostile_room_name_as_text(services):
    async with services("booking") as booking:
        client = booking.client
        staff = await booking.staff("ks-staff", ["primskovo"])
        rooms = f"id;ks;name;address;capacity\r\nprimskovo-klet;primskovo;{CALC};Jezerska cesta 41;20\r\n"
        imported = await client.post(
            "/api/v1/rooms/import", content=rooms.encode(), headers={**staff, "Content-Type": "text/csv"}
        )
        assert imported.json() == {"created": 1, "updated": 0, "errors": []}, imported.text
        day = day_ahead(3)
        made = await client.post(
            "/api/v1/bookings",
            json={
                "room_id": "primskovo-klet",
                "starts_at": at(day, "10:00").isoformat(),
                "ends_at": at(day, "12:00").isoformat(),
                "purpose": "Sestanek",
                "name": HYPERLINK,
                "email": "drustvo@example.si",
                "attendees": 8,
            },
            headers=staff,
        )
        assert made.status_code == 201 and made.json()["status"] == "confirmed", made.text

        exported = await client.get(
            "/api/v1/figures.csv",
            params={"period": "month", "from": day.replace(day=1).isoformat(), "to": day.isoformat()},
            headers=staff,
        )
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("text/csv")
        rows = spreadsheet_rows(exported.content)
        assert rows[0][:2] == ["KS", "prostor"]
        [row] = [r for r in rows[1:] if r[0] == "primskovo" and r[1].endswith(CALC)]
        assert row[1] == "'" + CALC
        assert row[5] == "2,00"  # hours keep their decimal comma
        assert_no_formula(rows)


async def test_survey_results_keep_formulas_as_text(services):
    async with services("surveys") as surveys:
        client = surveys.client
        created = await client.post(
            "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=ADMIN)).status_code == 200
        for text in HOSTILE_NAMES:
            answered = await client.post(
                f"/api/v1/surveys/{sid}/responses",
                json={"answers": {"need": "yes", "what": ["youth"], "existing": text}},
            )
            assert answered.status_code == 201, answered.text
        exported = await client.get(f"/api/v1/surveys/{sid}/results.csv", headers=ADMIN)
        assert exported.status_code == 200, exported.text
        rows = spreadsheet_rows(exported.content)
        cells = [cell for row in rows for cell in row]
        assert "'" + HYPERLINK in cells and "'" + CALC in cells
        assert_no_formula(rows)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (HYPERLINK, "'" + HYPERLINK),
        (CALC, "'" + CALC),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("-1+cmd", "'-1+cmd"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("  =1+1", "'  =1+1"),
        ("Mojca Novak", "Mojca Novak"),
        ("+386 40 123 456", "+386 40 123 456"),
        ("-3", "-3"),
        ("2,50", "2,50"),
        (7, 7),
        (None, ""),
    ],
)
def test_the_one_writer_neutralises_every_formula_start(value, written):
    from shared.web.csv_export import csv_text, neutralise

    assert neutralise(value) == written
    text = csv_text([[value]], header=["x"])
    assert text.startswith("\ufeffx\r\n")
    assert spreadsheet_rows(text.encode())[1] == [str(written)]
