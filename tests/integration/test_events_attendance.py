"""Attendance of an event through the real HTTP API, on SQLite and PostgreSQL:

- it is refused (409, Slovenian / English detail) until the event — or that date of a
  series — has started, and taken once it has (the clock frozen in-process after the start);
- it is counted in the platform's ONE set of age bands (shared.contracts.age), the same the
  surveys API takes for `age_band`, so reach by age compares between events and surveys;
  the old groups (otroci, mladi, …) are refused;
- the staff page says when attendance can be recorded and, once it can, labels the bands;
- migration events_0004 maps stored old groups (otroci→0-14, mladi→15-29, starejsi→65+,
  odrasli kept as the legacy 30-64) and back.

No literal dates: every time is relative to `shared.clock.now()`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from support.settings import TEST_ADMIN_TOKEN, make_settings
from support.times import local_day

from services.events import domain
from services.events.app import create_app
from services.surveys.app import create_app as create_surveys_app
from services.surveys.config import SurveysConfig
from shared import clock
from shared.contracts.age import AGE_BANDS
from shared.migrations import alembic_config, upgrade
from shared.models import UTCDateTime

pytestmark = pytest.mark.integration
ADMIN = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
TZ = domain.TZ
NOWHERE = "amqp://guest:guest@127.0.0.1:9/"  # the relay never connects; nothing here needs the bus



async def _event(client: httpx.AsyncClient, starts: datetime, **extra) -> str:
    created = await client.post(
        "/api/v1/events",
        json={
            "ks": "primskovo",
            "title": "Medgeneracijska delavnica",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=2)).isoformat(),
            "venue": "Dom KS Primskovo",
            **extra,
        },
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    published = await client.post(f"/api/v1/events/{event_id}/publish", headers=ADMIN)
    assert published.status_code == 200, published.text
    return event_id


async def test_attendance_only_once_started_in_the_shared_age_bands(tmp_path, database_url):
    app = create_app(make_settings(tmp_path, NOWHERE, events_database_url=database_url), start_bus=False)
    starts = local_day(3)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            event_id = await _event(client, starts)
            counts = {"0-14": 4, "15-29": 3, "30-49": 6, "50-64": 5, "65+": 7}

            # before the start: 409, said in Slovenian and English, nothing stored
            early = await client.put(f"/api/v1/events/{event_id}/attendance", json={"counts": counts}, headers=ADMIN)
            assert early.status_code == 409, early.text
            detail = early.json()["detail"]
            assert detail.startswith("Udeležbo lahko vpišete, ko se dogodek začne (")
            assert "/ Attendance can be recorded once the event has started" in detail
            nothing = (await client.get(f"/api/v1/events/{event_id}/attendance", headers=ADMIN)).json()
            assert nothing["total"] == 0 and nothing["dates"] == []
            assert nothing["bands"] == list(AGE_BANDS) == ["0-14", "15-29", "30-49", "50-64", "65+"]
            # the staff page says when, and offers no form yet
            page = await client.get(f"/events/osebje/{event_id}", headers=ADMIN)
            assert page.status_code == 200
            assert "Udeležbo lahko vpišete, ko se dogodek začne" in page.text
            assert "Shrani udeležbo" not in page.text

            # a minute before the start it is still refused; a minute after, it is taken
            with clock.frozen(starts - timedelta(minutes=1)):
                still = await client.put(
                    f"/api/v1/events/{event_id}/attendance", json={"counts": counts}, headers=ADMIN
                )
                assert still.status_code == 409
            with clock.frozen(starts + timedelta(minutes=1)):
                # the old age groups are not bands any more
                old = await client.put(
                    f"/api/v1/events/{event_id}/attendance", json={"counts": {"otroci": 4}}, headers=ADMIN
                )
                assert old.status_code == 422, old.text
                taken = await client.put(
                    f"/api/v1/events/{event_id}/attendance", json={"counts": counts}, headers=ADMIN
                )
                assert taken.status_code == 200, taken.text
                body = taken.json()
                assert body["counts"] == counts and body["total"] == 25
                [date] = body["dates"]
                assert datetime.fromisoformat(date["occurrence"]) == starts
                # recording again replaces the date's counts
                again = await client.put(
                    f"/api/v1/events/{event_id}/attendance", json={"counts": {"0-14": 2, "65+": 9}}, headers=ADMIN
                )
                assert again.json()["counts"] == {"0-14": 2, "15-29": 0, "30-49": 0, "50-64": 0, "65+": 9}

                # the staff page: the bands' Slovenian labels in the form, and what was recorded
                page = await client.get(f"/events/osebje/{event_id}", headers=ADMIN)
                assert "Shrani udeležbo" in page.text
                for label in ("0–14 let (otroci)", "15–29 let", "30–49 let", "50–64 let", "65 let in več"):
                    assert label in page.text
                assert "Skupaj: 11" in page.text
                for old_group in ("Mladi", "Odrasli", "Starejši"):
                    assert f">{old_group}<" not in page.text

            got = (await client.get(f"/api/v1/events/{event_id}/attendance", headers=ADMIN)).json()
            assert got["total"] == 11


async def test_attendance_of_a_series_per_date(tmp_path, database_url):
    app = create_app(make_settings(tmp_path, NOWHERE, events_database_url=database_url), start_bus=False)
    first = local_day(2)
    second, third = first + timedelta(weeks=1), first + timedelta(weeks=2)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
            event_id = await _event(client, first, rrule="FREQ=WEEKLY;COUNT=3")
            url = f"/api/v1/events/{event_id}/attendance"
            with clock.frozen(second + timedelta(minutes=30)):
                # no date named: the latest that has started (the second)
                r = await client.put(url, json={"counts": {"30-49": 8}}, headers=ADMIN)
                assert r.status_code == 200, r.text
                assert [datetime.fromisoformat(d["occurrence"]) for d in r.json()["dates"]] == [second]
                # the first date may be recorded later, the third not before it starts
                r = await client.put(url, json={"counts": {"65+": 5}, "occurrence": first.isoformat()}, headers=ADMIN)
                assert r.status_code == 200, r.text
                r = await client.put(url, json={"counts": {"65+": 5}, "occurrence": third.isoformat()}, headers=ADMIN)
                assert r.status_code == 409 and "ko se dogodek začne" in r.json()["detail"]
                # a time that is no date of the series
                r = await client.put(
                    url,
                    json={"counts": {"65+": 5}, "occurrence": (first + timedelta(hours=1)).isoformat()},
                    headers=ADMIN,
                )
                assert r.status_code == 409 and r.json()["detail"].startswith("Dogodek nima termina")
            got = (await client.get(url, headers=ADMIN)).json()
            assert got["counts"]["30-49"] == 8 and got["counts"]["65+"] == 5 and got["total"] == 13
            assert [datetime.fromisoformat(d["occurrence"]) for d in got["dates"]] == [first, second]


async def test_surveys_take_the_same_bands(tmp_path, amqp_url):
    """The contract's four bands are still taken, 0-14 too (a compatible extension); results
    are counted in exactly the bands events attendance uses (plus `unknown`)."""
    settings = make_settings(tmp_path, amqp_url)
    app = create_surveys_app(settings, config=SurveysConfig())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://surveys.test") as client:
            made = await client.post(
                "/api/v1/surveys", json={"template": "needs-assessment", "ks": "primskovo"}, headers=ADMIN
            )
            sid = made.json()["id"]
            assert (await client.post(f"/api/v1/surveys/{sid}/open", headers=ADMIN)).status_code == 200
            for band in ("0-14", "15-29", "30-49", "50-64", "65+"):
                r = await client.post(
                    f"/api/v1/surveys/{sid}/responses",
                    json={"answers": {"need": "yes", "what": ["youth"]}, "age_band": band},
                )
                assert r.status_code == 201, (band, r.text)
            r = await client.post(
                f"/api/v1/surveys/{sid}/responses",
                json={"answers": {"need": "yes", "what": ["youth"]}, "age_band": "otroci"},
            )
            assert r.status_code == 422
            results = (await client.get(f"/api/v1/surveys/{sid}/results", headers=ADMIN)).json()
            assert list(results["by_age_band"]) == [*AGE_BANDS, "unknown"]
            assert all(results["by_age_band"][b] == 1 for b in AGE_BANDS)


async def test_migration_maps_the_old_age_groups(tmp_path, database_url):
    """events_0003 → events_0004: otroci→0-14, mladi→15-29, starejsi→65+, odrasli kept as
    the legacy band 30-64 (it spans two bands), each on the event's start; and back."""
    await asyncio.to_thread(upgrade, "events", database_url, "events_0003")
    starts = (clock.now() - timedelta(days=10)).replace(microsecond=0)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO events (id, ks, title, description, starts_at, ends_at, venue, status, created_by, "
                    "created_at, audience, topics, organiser, accessibility, exdates, moved) VALUES "
                    "('old', 'primskovo', 'Stara delavnica', '', :s, :e, 'Dom KS', 'published', 't', :s, "
                    "'[\"vsi\"]', '[]', '', '', '[]', '[]')"
                ).bindparams(sa.bindparam("s", type_=UTCDateTime()), sa.bindparam("e", type_=UTCDateTime())),
                {"s": starts, "e": starts + timedelta(hours=2)},
            )
            for group, count in (("otroci", 4), ("mladi", 3), ("odrasli", 10), ("starejsi", 7)):
                await conn.execute(
                    sa.text(
                        "INSERT INTO attendance (event_id, age_group, count, recorded_by, recorded_at) "
                        "VALUES ('old', :g, :c, 't', :s)"
                    ).bindparams(sa.bindparam("s", type_=UTCDateTime())),
                    {"g": group, "c": count, "s": starts},
                )
        await asyncio.to_thread(upgrade, "events", database_url, "events_0004")
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT age_band, count, occurrence FROM attendance"))).all()
            sequence = (await conn.execute(sa.text("SELECT sequence FROM events"))).scalar_one()
        assert {r[0]: r[1] for r in rows} == {"0-14": 4, "15-29": 3, "30-64": 10, "65+": 7}
        assert sequence == 0

        # the service reads them: totals right, the legacy band labelled on the staff page
        app = create_app(make_settings(tmp_path, NOWHERE, events_database_url=database_url), start_bus=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://events.test") as client:
                got = (await client.get("/api/v1/events/old/attendance", headers=ADMIN)).json()
                assert got["total"] == 24 and got["counts"]["30-64"] == 10
                [date] = got["dates"]
                assert datetime.fromisoformat(date["occurrence"]).astimezone(UTC) == starts.astimezone(UTC)
                page = await client.get("/events/osebje/old", headers=ADMIN)
                assert "30–64 let (odrasli, pred delitvijo)" in page.text

        from alembic import command

        await asyncio.to_thread(command.downgrade, alembic_config("events", database_url), "events_0003")
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT age_group, count FROM attendance"))).all()
        assert dict(rows) == {"otroci": 4, "mladi": 3, "odrasli": 10, "starejsi": 7}
    finally:
        await engine.dispose()
