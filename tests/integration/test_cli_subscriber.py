"""`kranj subscriber add|import|erase` against real databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from kranj.cli import app
from services.notify.models import Subscriber, SubscriberKs
from shared.db import Database

pytestmark = pytest.mark.integration


NO_BROKER = "amqp://guest:guest@127.0.0.1:1/"


def kranj(tmp_path: Path, database_url: str, *args: str, amqp: str = NO_BROKER) -> Any:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update(
        {
            "KRANJ_DATA_DIR": str(tmp_path / "var"),
            "KRANJ_NOTIFY_DATABASE_URL": database_url,
            "KRANJ_AMQP_URL": amqp,  # add/import never need it; erase also clears dead letters
        }
    )
    return CliRunner().invoke(app, list(args), env=env)


def subscribers(database_url: str) -> list[tuple[Subscriber, list[str]]]:
    async def read() -> list[tuple[Subscriber, list[str]]]:
        db = Database(database_url)
        try:
            async with db.session() as session:
                rows = list((await session.exec(select(Subscriber).order_by(Subscriber.created_at))).all())
                result = []
                for row in rows:
                    ks = (await session.exec(select(SubscriberKs.ks).where(SubscriberKs.subscriber_id == row.id))).all()
                    result.append((row, sorted(ks)))
                return result
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_add_records_staff_consent_and_prints_only_a_masked_contact(tmp_path: Path, database_url: str) -> None:
    result = kranj(
        tmp_path, database_url,
        "subscriber", "add", "--ks", "primskovo", "--ks", "center", "--email", "Ana@Example.si",
        "--phone", "040 123 456", "--topic", "events", "--channel", "sms",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "a***@example.si" in result.stdout and "+386***56" in result.stdout
    assert "ana@example.si" not in result.output.lower() and "40123456" not in result.output
    [(row, ks)] = subscribers(database_url)
    assert (row.email, row.phone, row.channels, row.consent_source) == (
        "ana@example.si",
        "+38640123456",
        ["sms"],
        "staff",
    )
    assert ks == ["center", "primskovo"]
    assert row.id in result.stdout

    again = kranj(tmp_path, database_url, "subscriber", "add", "--ks", "huje", "--email", "ana@example.si")
    assert again.exit_code == 1
    assert "Already subscribed" in again.stderr and "Traceback" not in again.output
    assert len(subscribers(database_url)) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--ks", "atlantida", "--email", "a@example.si"], "unknown KS 'atlantida'"),
        (["--ks", "center", "--phone", "12"], "phone: not a valid phone number"),
        (["--ks", "center"], "give an email address or a phone number"),
        (["--ks", "center", "--email", "a@example.si", "--channel", "sms"], "sms needs a phone number"),
    ],
)
def test_add_with_bad_input_says_why_in_one_line(tmp_path: Path, args: list[str], expected: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}"
    result = kranj(tmp_path, url, "subscriber", "add", *args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("kranj: cannot subscribe: ")


def test_import_loads_the_good_rows_and_reports_the_bad_by_line(tmp_path: Path, database_url: str) -> None:
    assert (
        kranj(tmp_path, database_url, "subscriber", "add", "--ks", "huje", "--email", "old@example.si").exit_code == 0
    )
    sheet = tmp_path / "prijavnice.csv"
    sheet.write_bytes(
        b"\xef\xbb\xbf"
        + (
            "Email;Phone;KS;Topics;Channels;Language\r\n"
            "mojca@example.si;041 234 567;Primskovo|Čirče;general|events;email|sms;sl\r\n"
            "ne-e-posta;;primskovo;;;\r\n"
            "old@example.si;;center;;;\r\n"
            ";+38631999888;zlato-polje;;;en\r\n"
            "x@example.si;;atlantida;;;\r\n"
        ).encode()
    )
    dry = kranj(tmp_path, database_url, "subscriber", "import", str(sheet), "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert "2 row(s) would load, 3 row(s) have errors; nothing was written" in dry.stdout
    assert "line 4: already subscribed" in dry.stderr
    assert len(subscribers(database_url)) == 1

    result = kranj(tmp_path, database_url, "subscriber", "import", str(sheet))
    assert result.exit_code == 1, result.output
    assert result.stdout.strip().endswith("2 subscriber(s) loaded, 3 row(s) failed.")
    errors = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [e.split(":")[0] for e in errors] == ["line 3", "line 4", "line 6"]
    assert "email" in errors[0] and "already subscribed" in errors[1] and "unknown KS" in errors[2]

    rows = {(r.email or r.phone): (r, ks) for r, ks in subscribers(database_url)}
    assert set(rows) == {"old@example.si", "mojca@example.si", "+38631999888"}
    mojca, mojca_ks = rows["mojca@example.si"]
    assert mojca.consent_source == "import" and mojca.phone == "+38641234567"
    assert mojca_ks == ["circe", "primskovo"]
    assert rows["+38631999888"][0].language == "en"

    fixed = tmp_path / "popravki.csv"
    fixed.write_text("email,ks\nnova@example.si,center\n", encoding="utf-8")
    ok = kranj(tmp_path, database_url, "subscriber", "import", str(fixed))
    assert ok.exit_code == 0 and "1 subscriber(s) loaded, 0 row(s) failed." in ok.stdout


def test_import_of_an_unusable_file_exits_2(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}"
    sheet = tmp_path / "bad.csv"
    sheet.write_text("ime;priimek\nAna;Novak\n", encoding="utf-8")
    result = kranj(tmp_path, url, "subscriber", "import", str(sheet))
    assert result.exit_code == 2 and "no `ks` column" in result.stderr
    missing = kranj(tmp_path, url, "subscriber", "import", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_erase_removes_the_resident_and_says_where(tmp_path: Path, database_url: str, amqp_url: str) -> None:
    kranj(
        tmp_path,
        database_url,
        "subscriber",
        "add",
        "--ks",
        "center",
        "--email",
        "ana@example.si",
        "--phone",
        "040123456",
    )
    kranj(tmp_path, database_url, "subscriber", "add", "--ks", "center", "--email", "bojan@example.si")
    result = kranj(tmp_path, database_url, "subscriber", "erase", "--phone", "+386 40 123 456", amqp=amqp_url)
    assert result.exit_code == 0, result.output
    assert "notify: subscribers 1," in result.stdout
    # booking, surveys and events (registrations) hold contact data too
    assert "booking:" in result.stdout and "surveys:" in result.stdout and "events:" in result.stdout
    assert "every service" in result.stdout
    assert [r.email for r, _ in subscribers(database_url)] == ["bojan@example.si"]
    nothing = kranj(tmp_path, database_url, "subscriber", "erase", "--email", "nobody@example.si", amqp=amqp_url)
    assert nothing.exit_code == 0 and "notify: subscribers 0," in nothing.stdout
    # Without the broker the databases are done, but the dead letters are not: it says so, exit 1.
    kranj(tmp_path, database_url, "subscriber", "add", "--ks", "center", "--email", "cilka@example.si")
    offline = kranj(tmp_path, database_url, "subscriber", "erase", "--email", "cilka@example.si")
    assert offline.exit_code == 1 and "notify: subscribers 1," in offline.stdout
    assert "dead letters" in offline.output and "again" in offline.output
    assert kranj(tmp_path, database_url, "subscriber", "erase").exit_code == 2
