"""The access console's commands without a site: arguments, the kept sign-in file, picking
a Jump Item, and the local terminal put back however a relay ends (on a real PTY)."""

from __future__ import annotations

import fcntl
import os
import stat
import struct
import termios
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.access_console import saved
from bastion.access_console.cli import pick
from bastion.access_console.errors import ConsoleError, NotSignedInError
from bastion.access_console.protocol import JumpItem
from bastion.access_console.terminal import raw_mode, terminal_size
from bastion.entrypoints.cli import app

runner = CliRunner()


def item(id: int, name: str, hostname: str) -> JumpItem:
    return JumpItem(
        id=id,
        name=name,
        hostname=hostname,
        group="",
        tag="",
        mode="active",
        status="online",
        version="1.0.0",
        jumpable=True,
    )


ITEMS = [item(1, "web1", "web1.example.org"), item(2, "Web1", "other"), item(12, "db", "DB.lan")]


def test_a_jump_item_is_picked_by_id_name_or_hostname() -> None:
    assert pick(ITEMS, "12").name == "db"
    assert pick(ITEMS, "web1").id == 1
    assert pick(ITEMS, "Web1").id == 2
    assert pick(ITEMS, "db.LAN").id == 12
    with pytest.raises(ConsoleError, match=r"Several Jump Items match 'WEB1': 1 \(web1"):
        pick(ITEMS, "WEB1")
    with pytest.raises(ConsoleError, match="No Jump Item is named 'mail'"):
        pick(ITEMS, "mail")


def test_the_sign_in_is_kept_whole_for_its_owner_only(tmp_path: Path) -> None:
    where = saved.path({"XDG_CONFIG_HOME": str(tmp_path)})
    assert where == tmp_path / "bastion" / "console.json"
    kept = saved.SavedSignIn("https://bastion.test", "secret-token", "rep", "2026-12-02T20:00:00")
    saved.save(kept, where)
    assert stat.S_IMODE(where.stat().st_mode) == 0o600
    assert stat.S_IMODE(where.parent.stat().st_mode) == 0o700
    assert saved.load(where) == kept
    assert "secret-token" not in repr(kept)
    assert [p.name for p in where.parent.iterdir()] == ["console.json"]  # no temp file left
    assert saved.forget(where) and not where.exists()
    with pytest.raises(NotSignedInError):
        saved.load(where)
    where.write_text("{not json")
    with pytest.raises(ConsoleError, match="damaged"):
        saved.load(where)


def test_a_relative_xdg_config_home_is_ignored() -> None:
    assert (
        saved.path({"XDG_CONFIG_HOME": "relative"}) == Path.home() / ".config/bastion/console.json"
    )


def test_raw_mode_is_undone_however_the_block_ends() -> None:
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        with pytest.raises(RuntimeError), raw_mode(slave) as raw:
            assert raw
            lflag = termios.tcgetattr(slave)[3]
            assert not lflag & (termios.ICANON | termios.ECHO | termios.ISIG)
            raise RuntimeError("the relay failed")
        assert termios.tcgetattr(slave) == before
        reader, writer = os.pipe()
        with raw_mode(reader) as raw:
            assert not raw
        os.close(reader)
        os.close(writer)
    finally:
        os.close(master)
        os.close(slave)


def test_the_terminal_size_is_read_from_the_terminal() -> None:
    master, slave = os.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        assert terminal_size(slave) == (101, 33)
        reader, writer = os.pipe()
        assert terminal_size(reader) is None
        os.close(reader)
        os.close(writer)
    finally:
        os.close(master)
        os.close(slave)


# -- the commands -------------------------------------------------------------------


def invoke(tmp_path: Path, *args: str, stdin: str = "") -> tuple[int, str]:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "COLUMNS": "200"}
    result = runner.invoke(app, ["console", *args], input=stdin, env=env)
    return result.exit_code, result.output


def test_sign_in_needs_a_site_and_a_username(tmp_path: Path) -> None:
    code, output = invoke(tmp_path, "sign-in", "--username", "rep")
    assert code == 2 and "--site" in output
    code, output = invoke(tmp_path, "sign-in", "--site", "https://bastion.test")
    assert code == 2 and "--username" in output


def test_sign_in_refuses_a_site_that_is_not_https(tmp_path: Path) -> None:
    code, output = invoke(
        tmp_path,
        "sign-in",
        "--site",
        "http://bastion.test",
        "--username",
        "rep",
        "--password-stdin",
        stdin="secret\n",
    )
    assert code == 2 and "https://HOST[:PORT]" in output
    assert not saved.path({"XDG_CONFIG_HOME": str(tmp_path)}).exists()


def test_an_unreachable_site_is_said_in_words(tmp_path: Path) -> None:
    code, output = invoke(
        tmp_path,
        "sign-in",
        "--site",
        "https://127.0.0.1:1",
        "--username",
        "rep",
        "--password-stdin",
        stdin="secret\n",
    )
    assert code == 2 and "Cannot reach https://127.0.0.1:1" in output


def test_commands_that_need_a_sign_in_say_so(tmp_path: Path) -> None:
    for command in (["list"], ["jump", "web1"]):
        code, output = invoke(tmp_path, *command)
        assert code == 2 and "Not signed in: run `bastion console sign-in" in output
    assert invoke(tmp_path, "sign-out") == (0, "Not signed in.\n")


def test_about_shows_the_consoles_own_version_without_a_sign_in(tmp_path: Path) -> None:
    from bastion.platform.build import build_id, site_version

    code, output = invoke(tmp_path, "about")
    assert code == 0
    assert output.splitlines() == [
        f"access console {site_version()} (build {build_id()})",
        "site: not signed in",
    ]
