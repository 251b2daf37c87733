"""`kranj up` without a broker, `kranj token create`, and the command surface of CONTRACT.md."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from kranj.cli import app
from shared.accounts import AccountStore
from shared.settings import Settings

KRANJ = Path(sys.executable).parent / "kranj"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KRANJ_")}
    env.update({"KRANJ_DATA_DIR": str(tmp_path / "var"), **extra})
    return env


def test_up_without_a_broker_says_so_in_one_line_and_exits_non_zero(tmp_path: Path) -> None:
    port = _closed_port()
    env = _clean_env(tmp_path, KRANJ_AMQP_URL=f"amqp://guest:s3cret@127.0.0.1:{port}/")
    started = time.monotonic()
    proc = subprocess.run(
        [str(KRANJ), "up"], check=False, env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert time.monotonic() - started < 10
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"kranj: RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{port}/ (")
    assert "KRANJ_AMQP_URL" in lines[0]
    assert "s3cret" not in proc.stderr + proc.stdout
    assert proc.stdout == ""
    assert not (tmp_path / "var").exists()  # nothing was migrated or started


def test_commands_of_the_contract_exist() -> None:
    runner = CliRunner()
    for args in (
        ["up"], ["run"], ["db", "upgrade"], ["subscriber", "add"], ["subscriber", "import"],
        ["subscriber", "erase"], ["dlq", "list"], ["dlq", "replay"], ["status"], ["token", "create"],
    ):  # fmt: skip
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_run_refuses_an_unknown_service() -> None:
    result = CliRunner().invoke(app, ["run", "weather"])
    assert result.exit_code == 2
    assert "weather" in result.output


@pytest.mark.parametrize(
    ("args", "role", "ks"),
    [
        (["--role", "admin"], "admin", ()),
        (
            ["--role", "ks-staff", "--ks", "primskovo", "--ks", "center", "--subject", "ana"],
            "ks-staff",
            ("center", "primskovo"),
        ),
        (["--role", "organiser", "--ks", "huje", "--label", "Društvo upokojencev"], "organiser", ("huje",)),
    ],
)
def test_token_create_prints_a_token_stored_only_as_its_hash(tmp_path: Path, args: list[str], role: str, ks: tuple) -> None:
    env = {k: None for k in os.environ if k.startswith("KRANJ_")}
    env.update({"KRANJ_DATA_DIR": str(tmp_path), "KRANJ_SECRET_KEY": "k" * 40})
    result = CliRunner().invoke(app, ["token", "create", *args], env=env)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token and token.startswith("kzv2.")  # stdout is the token alone: TOKEN=$(kranj token create ...)
    assert "keep it secret" in result.stderr

    store = AccountStore.from_settings(Settings(data_dir=tmp_path))

    async def check() -> None:
        try:
            identity = await store.token_identity(token)
            assert identity is not None and identity.role == role and identity.ks == ks
            if "--subject" in args:
                assert identity.subject == "ana"
            async with store.engine.connect() as conn:
                stored = (await conn.execute(sa.text("SELECT token_hash FROM api_tokens"))).scalars().all()
            assert stored == [hashlib.sha256(token.encode()).hexdigest()]  # the hash, never the token
        finally:
            await store.dispose()

    asyncio.run(check())
    listed = CliRunner().invoke(app, ["token", "list", "--json"], env=env)
    assert listed.exit_code == 0 and token not in listed.stdout
    [row] = json.loads(listed.stdout)
    assert row["role"] == role and row["revoked_at"] is None
    revoked = CliRunner().invoke(app, ["token", "revoke", row["id"]], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert json.loads(CliRunner().invoke(app, ["token", "list", "--json"], env=env).stdout)[0]["revoked_at"]
    again = CliRunner().invoke(app, ["token", "revoke", row["id"]], env=env)
    assert again.exit_code == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "ks-staff"], "needs at least one --ks"),
        (["--role", "organiser", "--ks", "atlantida"], "unknown KS atlantida"),
    ],
)
def test_token_create_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["token", "create", *args], env={"KRANJ_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_bad_gateway_port_is_one_clear_line(tmp_path: Path) -> None:
    env = _clean_env(tmp_path, KRANJ_GATEWAY_PORT="99999")
    proc = subprocess.run([str(KRANJ), "up"], check=False, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kranj: invalid configuration: KRANJ_GATEWAY_PORT: Input should be less than or equal to 65535"
    ]


def test_a_busy_front_door_port_is_one_warning_and_the_services_still_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import typer

    from kranj.cli.up import _front_door

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        monkeypatch.setenv("KRANJ_GATEWAY_PORT", str(port))
        assert _front_door(Settings(data_dir=tmp_path)) == (None, None, None)
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"kranj: the front door is not started: 127.0.0.1:{port} is not free")
        assert line.endswith("set KRANJ_GATEWAY_PORT to a free port, or 0 to run without it")

    monkeypatch.setenv("KRANJ_GATEWAY_PORT", "0")
    assert _front_door(Settings(data_dir=tmp_path)) == (None, None, None)
    monkeypatch.setenv("KRANJ_GATEWAY_PORT", "8002")
    with pytest.raises(typer.Exit):
        _front_door(Settings(data_dir=tmp_path, booking_port=8002))
    assert "is the port of booking" in capsys.readouterr().err


def test_the_front_door_port_is_bound_and_the_route_table_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kranj.cli.up import _front_door
    from kranj.routes import RouteTable

    monkeypatch.setenv("KRANJ_GATEWAY_PORT", str(_closed_port()))
    sock, door, table = _front_door(Settings(data_dir=tmp_path))
    try:
        assert sock is not None and table is not None
        assert door == f"http://127.0.0.1:{sock.getsockname()[1]}"
        stdout, _ = table.communicate(timeout=60)
        assert table.returncode == 0
        assert RouteTable.from_json(stdout).resolve("/manage/x") == ("notify", "/manage/x")
    finally:
        if sock is not None:
            sock.close()
