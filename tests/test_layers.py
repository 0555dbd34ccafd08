"""The layer rules hold: import-linter's contracts (pyproject.toml) and the checks in
`tests/layers.py`, on the source tree, and they catch a deliberate violation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def run_checks(source: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """import-linter and our own checks, run against the `bastion` package under `source`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(ROOT)])}
    contracts = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    ours = subprocess.run(
        [sys.executable, "-m", "tests.layers"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    return contracts, ours


def test_the_source_tree_keeps_every_layer_rule() -> None:
    contracts, ours = run_checks(ROOT / "src")
    assert contracts.returncode == 0, contracts.stdout + contracts.stderr
    assert "BROKEN" not in contracts.stdout
    assert ours.returncode == 0, ours.stdout + ours.stderr


@pytest.fixture
def violated(tmp_path: Path) -> Path:
    """A copy of the package in which rules do I/O, a service reaches into another
    capability's tables, and a lower capability imports a higher one."""
    copy = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "bastion", copy / "bastion", ignore=_caches)
    _append(copy / "bastion/backups/rules.py", "import sqlite3  # deliberate violation\n")
    _append(
        copy / "bastion/installs/service.py",
        "from bastion.accounts.models import Account  # deliberate violation\n",
    )
    _append(
        copy / "bastion/accounts/sign_in.py",
        "from bastion.installs import service as _installs  # deliberate violation\n",
    )
    return copy


def test_a_deliberate_violation_fails_the_checks(violated: Path) -> None:
    contracts, ours = run_checks(violated)
    assert contracts.returncode != 0
    assert "bastion.accounts is not allowed to import bastion.installs" in contracts.stdout
    assert ours.returncode == 1
    assert "bastion.backups.rules (pure rules) imports sqlite3" in ours.stdout
    assert "bastion.installs.service (a service) imports bastion.accounts.models" in ours.stdout
    assert "import cycle" in ours.stdout  # accounts.sign_in <-> installs.service


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line)


def _caches(_directory: str, names: list[str]) -> list[str]:
    return [name for name in names if name == "__pycache__"]
