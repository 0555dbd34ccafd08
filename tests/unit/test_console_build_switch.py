"""Where the console keeps its builds, which one it runs, and how it re-executes into it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.access_console import upgrading
from bastion.access_console.rules import CurrentBuild


def test_builds_live_under_the_users_data_directory(tmp_path: Path) -> None:
    assert upgrading.home({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "bastion" / "console"
    default = Path.home() / ".local/share" / "bastion" / "console"
    assert upgrading.home({"XDG_DATA_HOME": "relative"}) == default
    assert upgrading.home({}) == default


def test_the_current_build_is_one_that_is_named_and_installed(tmp_path: Path) -> None:
    assert upgrading.current(tmp_path) is None
    (tmp_path / upgrading.CURRENT).write_text("{damaged")
    assert upgrading.current(tmp_path) is None
    lib = tmp_path / "builds" / "1.1.0" / "lib"
    (tmp_path / upgrading.CURRENT).write_text(json.dumps({"version": "1.1.0", "lib": str(lib)}))
    assert upgrading.current(tmp_path) is None
    lib.mkdir(parents=True)
    assert upgrading.current(tmp_path) == CurrentBuild("1.1.0", str(lib))
    assert upgrading.lib_to_run("1.0.0", tmp_path) == str(lib)
    assert upgrading.lib_to_run("1.1.0", tmp_path) is None


def test_the_console_runs_the_same_command_again_from_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, list[str], dict[str, str]]] = []

    def execve(path: str, argv: list[str], env: dict[str, str]) -> Any:
        calls.append((path, argv, env))

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(sys, "argv", ["/usr/bin/bastion", "console", "jump", "web1"])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/old/lib", "/extra"]))
    monkeypatch.setenv(upgrading.BUILD_ENV, "/old/lib")
    monkeypatch.setenv(upgrading.UPGRADED_ENV, "0.9.0")
    upgrading.run_from("/new/lib", upgraded_from="1.0.0")
    [(path, argv, env)] = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "bastion", "console", "jump", "web1"]
    assert env["PYTHONPATH"] == os.pathsep.join(["/new/lib", "/extra"])
    assert env[upgrading.BUILD_ENV] == "/new/lib"
    assert env[upgrading.UPGRADED_ENV] == "1.0.0"
    calls.clear()
    upgrading.run_from("/new/lib")
    assert upgrading.UPGRADED_ENV not in calls[0][2]
