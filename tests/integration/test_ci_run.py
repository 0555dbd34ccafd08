"""`.ci/run` on a copy of this checkout: it installs its pinned uv privately, leaves the
machine's own uv alone, and fails when a test fails or when no test ran."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
PROBE = "tests/test_ci_probe.py"
PROBES = """
import os


def test_passes() -> None:
    assert True


def test_fails_when_asked() -> None:
    assert os.environ.get("CI_PROBE_FAIL") != "1", "a test that fails"
"""


@dataclass(frozen=True)
class Checkout:
    root: Path
    env: dict[str, str]

    def ci_run(self, *pytest_args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / ".ci" / "run"), *pytest_args, "-p", "no:cacheprovider"],
            cwd=self.root,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=600,
        )


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()]


def outside_this_environment() -> dict[str, str]:
    """The environment of a shell on this machine, not of the suite's own `uv run`."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith("UV")}
    venv = str(REPO / ".venv")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if venv not in p)
    return env


def missing_system_packages() -> list[str]:
    """What `.ci/run` would install with apt: this test runs it only where nothing is missing
    (an apt install is for a CI machine, not for a test on a workstation)."""
    tools = {"chromium": "/usr/bin/chromium", "node": "node", "openssl": "openssl"}
    tools |= {"zstd": "zstd", "sqlite3": "sqlite3"}
    missing = [name for name, tool in tools.items() if shutil.which(tool) is None]
    if shutil.which("initdb") is None and not Path("/usr/lib/postgresql/15/bin/initdb").exists():
        missing.append("postgresql")
    venv = subprocess.run(["python3", "-c", "import ensurepip, venv"], capture_output=True)
    return [*missing, *(["python3-venv"] if venv.returncode else [])]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Checkout]:
    missing = missing_system_packages()
    if missing:
        skip_or_fail(f"`.ci/run` would install {', '.join(missing)} with apt first")
    root = tmp_path_factory.mktemp("checkout")
    for name in tracked_files():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / PROBE).write_text(PROBES)
    yield Checkout(root, outside_this_environment())


def pinned_version() -> str:
    found = re.search(r"^UV_VERSION=(\S+)$", (REPO / ".ci" / "run").read_text(), re.M)
    assert found, "`.ci/run` names no UV_VERSION"
    return found.group(1)


def machine_uv() -> tuple[str, str] | None:
    """Where the machine's own uv is and what it holds, to see that it stays as it was."""
    found = shutil.which("uv", path=outside_this_environment()["PATH"])
    if found is None:
        return None
    real = os.path.realpath(found)
    return real, hashlib.sha256(Path(real).read_bytes()).hexdigest()


def test_passing_tests_pass_with_a_privately_installed_uv(checkout: Checkout) -> None:
    before = machine_uv()
    ran = checkout.ci_run(PROBE, "-k", "passes")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 passed" in ran.stdout
    private = checkout.root / ".ci" / ".tools" / f"uv-{pinned_version()}" / "bin" / "uv"
    version = subprocess.run([private, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith(f"uv {pinned_version()}")
    assert machine_uv() == before


def test_a_failing_test_fails_the_run(checkout: Checkout) -> None:
    ran = checkout.ci_run(PROBE, CI_PROBE_FAIL="1")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "1 failed, 1 passed" in ran.stdout


def test_a_run_that_collects_no_test_fails(checkout: Checkout) -> None:
    ran = checkout.ci_run(PROBE, "-k", "no_test_has_this_name")
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "pytest collected no tests: that is a failure" in ran.stderr
