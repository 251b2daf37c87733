"""Configuration (shared/settings.py): quiet hours, database URLs, the local signing key."""

from __future__ import annotations

import stat
from datetime import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings, normalise_database_url, parse_quiet_hours


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests build `Settings()` from the environment: start from none of ours."""
    import os

    for name in list(os.environ):
        if name.startswith("KRANJ_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("21:00-07:00", (time(21, 0), time(7, 0))),
        (" 22:30 - 06:15 ", (time(22, 30), time(6, 15))),
        ("13:00-14:00", (time(13, 0), time(14, 0))),
        ("off", None),
        ("OFF", None),
        ("none", None),
        ("", None),
    ],
)
def test_parse_quiet_hours(value: str, expected: tuple[time, time] | None) -> None:
    assert parse_quiet_hours(value) == expected


@pytest.mark.parametrize("bad", ["21:00", "9pm-7am", "25:00-07:00", "21:00-07:00-08:00", "always"])
def test_bad_quiet_hours_are_refused_readably(bad: str) -> None:
    with pytest.raises(ValueError, match="KRANJ_QUIET_HOURS must look like 21:00-07:00"):
        parse_quiet_hours(bad)
    with pytest.raises(ValidationError, match="KRANJ_QUIET_HOURS must look like 21:00-07:00"):
        Settings(quiet_hours=bad)


def test_quiet_hours_default_and_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().quiet_window == (time(21, 0), time(7, 0))
    monkeypatch.setenv("KRANJ_QUIET_HOURS", "off")
    assert Settings().quiet_window is None
    monkeypatch.setenv("KRANJ_QUIET_HOURS", "nonsense")
    with pytest.raises(ValidationError, match="not 'nonsense'"):
        Settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/events", "postgresql+asyncpg://u:p@db:5432/events"),
        ("postgresql://u@db/events", "postgresql+asyncpg://u@db/events"),
        ("postgresql+psycopg://u@db/events", "postgresql+asyncpg://u@db/events"),
        ("postgresql+asyncpg://u@db/events", "postgresql+asyncpg://u@db/events"),
        ("sqlite:///var/events.db", "sqlite+aiosqlite:///var/events.db"),
        ("sqlite+aiosqlite:///var/events.db", "sqlite+aiosqlite:///var/events.db"),
    ],
)
def test_normalise_database_url(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_database_url_per_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KRANJ_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KRANJ_NOTIFY_DATABASE_URL", "postgresql://kranj@db/notify")
    settings = Settings()
    assert settings.database_url("events") == f"sqlite+aiosqlite:///{(tmp_path / 'events.db').resolve()}"
    assert settings.database_url("notify") == "postgresql+asyncpg://kranj@db/notify"


def test_signing_key_is_generated_once_into_the_data_dir_and_reused(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"  # does not exist yet
    first = Settings(data_dir=data_dir).signing_key()
    key_file = data_dir / "secret.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 40
    assert key_file.read_text().strip() == first
    assert Settings(data_dir=data_dir).signing_key() == first  # a later process reuses it
    assert Settings(data_dir=tmp_path / "other").signing_key() != first


def test_configured_secret_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key="from-the-environment")
    assert settings.signing_key() == "from-the-environment"
    assert not (tmp_path / "secret.key").exists()


def test_public_base_defaults_to_each_service_local_address() -> None:
    settings = Settings()
    assert settings.public_base("events") == "http://127.0.0.1:8001"
    assert settings.public_base("notify") == "http://127.0.0.1:8004"
    assert Settings(public_url="https://kranj.example/").public_base("booking") == "https://kranj.example"
    assert Settings(http_host="0.0.0.0").local_url("surveys") == "http://127.0.0.1:8003"
