"""Build Bastion release wheels from this checkout's own source, at any version we like."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 600.0
BROKEN_DIR = "broken-health"
"""Subdirectory of `out_dir` for broken variants: they share the healthy wheel's file name."""

_HEALTH_FILE = Path("src/bastion/appliance/health.py")
_HEALTH_DEF = (
    "async def health_answer(runtime: Runtime, probe: HealthProbe)"
    " -> tuple[int, dict[str, object]]:\n"
)
"""The one place both ways to `/check_health` (the listeners' and the route the supervisor
asks) take their answer from."""
_HEALTH_BROKEN = (
    '    body: dict[str, object] = {"version": build.site_version(), "failover_role": "none",'
    ' "status": "broken on purpose"}\n'
    "    return 500, body\n"
)
_VERSION_LINE = re.compile(r'^version\s*=\s*"[^"\n]*"[ \t]*$', re.MULTILINE)

_SUPERVISOR_MAIN = Path("src/bastion/supervisor/__main__.py")
_SERVING_FILE = Path("src/bastion/entrypoints/serving.py")
_SERVE_DEF = "async def serve("
_built: dict[tuple[str, bool, str, bool, bool, bool, Path], Path] = {}


class ReleaseBuildError(RuntimeError):
    """A release wheel could not be built or is not what was asked for."""


def project_wheel(
    version: str,
    out_dir: Path,
    *,
    broken_health: bool = False,
    new_table: str = "",
    broken_supervisor: bool = False,
    broken_agent: bool = False,
    exits_on_start: bool = False,
) -> Path:
    """A wheel of this project's own source with `version` in place of pyproject's version.

    `new_table`: the release adds a migration creating that table, so that an install
    that is undone must also undo its schema change. `broken_supervisor`: as a base
    release, its supervisor exits at once. `broken_agent`: its Jump Client cannot reach
    the site (it signs its hello for another site). `exits_on_start`: its worker exits
    (code 1) when it starts serving, once told to begin.
    """
    key = (
        version,
        broken_health,
        new_table,
        broken_supervisor,
        broken_agent,
        exits_on_start,
        out_dir.resolve(),
    )
    cached = _built.get(key)
    if cached is not None and cached.is_file():
        return cached
    target = out_dir / BROKEN_DIR if broken_health else out_dir
    if new_table:
        target = target / f"with-{new_table}"
    if broken_supervisor:
        target = target / "broken-supervisor"
    if broken_agent:
        target = target / "broken-agent"
    if exits_on_start:
        target = target / "exits-on-start"
    target.mkdir(parents=True, exist_ok=True)
    wheel = target / f"bastion-{version}-py3-none-any.whl"
    wheel.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="bastion-release-") as tmp:
        source = Path(tmp) / "bastion"
        _copy_source(source)
        _set_version(source / "pyproject.toml", version)
        if broken_health:
            _break_health(source / _HEALTH_FILE)
        if new_table:
            _add_migration(source / _MIGRATIONS, new_table)
        if broken_supervisor:
            main = source / _SUPERVISOR_MAIN
            main.write_text('raise SystemExit("this supervisor is broken on purpose")\n')
        if broken_agent:
            _break_agent(source / _AGENT_IDENTITY)
        if exits_on_start:
            _exit_on_start(source / _SERVING_FILE)
        _build(source, target)
    _check_wheel(wheel, version)
    _built[key] = wheel
    return wheel


_MIGRATIONS = "src/bastion/platform/db/migrations/versions"
_AGENT_IDENTITY = "src/bastion/agents/identity.py"


def _break_agent(path: Path) -> None:
    """The client signs its hello for another site: the site (whose gateway checks with
    code of its own) refuses it, so the build never reaches the site."""
    text = path.read_text()
    signed = "return self.private_key.sign(hello_payload(site, self.client_id, nonce))"
    if signed not in text:
        raise ReleaseBuildError(f"{path} no longer says {signed!r}; update _break_agent")
    broken = 'return self.private_key.sign(hello_payload(site + ".broken", self.client_id, nonce))'
    path.write_text(text.replace(signed, broken))


def _add_migration(versions: Path, table: str) -> None:
    """A migration after the current head that creates `table`."""
    revisions, downs = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        revisions |= set(re.findall(r'^revision = "([^"]+)"', text, re.M))
        downs |= set(re.findall(r'^down_revision = "([^"]+)"', text, re.M))
    heads = revisions - downs
    if len(heads) != 1:
        raise ReleaseBuildError(f"cannot add a migration: the heads are {sorted(heads)}")
    (versions / f"9001_{table}.py").write_text(
        f'''"""Test release: add the {table} table."""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{heads.pop()}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("{table}", sa.Column("id", sa.Integer, primary_key=True))


def downgrade() -> None:
    op.drop_table("{table}")
'''
    )


def _copy_source(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO_ROOT / "src", dest / "src", ignore=ignore)


def _set_version(pyproject: Path, version: str) -> None:
    text = pyproject.read_text(encoding="utf-8")
    start = text.find("[project]\n")
    if start < 0:
        raise ReleaseBuildError(f"no [project] table in {pyproject}")
    following = text.find("\n[", start + 1)
    end = len(text) if following < 0 else following
    section, count = _VERSION_LINE.subn(f'version = "{version}"', text[start:end], count=1)
    if count != 1:
        raise ReleaseBuildError(f"no version line in the [project] table of {pyproject}")
    pyproject.write_text(text[:start] + section + text[end:], encoding="utf-8")
    written = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    if written != version:
        raise ReleaseBuildError(f"pyproject says version {written!r}, wanted {version!r}")


def _break_health(health: Path) -> None:
    text = health.read_text(encoding="utf-8")
    if text.count(_HEALTH_DEF) != 1:
        raise ReleaseBuildError(
            f"cannot make a broken-health variant: {health.name} no longer has exactly one "
            f"{_HEALTH_DEF.strip()!r}; update tests/support/releases.py"
        )
    health.write_text(text.replace(_HEALTH_DEF, _HEALTH_DEF + _HEALTH_BROKEN), encoding="utf-8")


def _exit_on_start(serving: Path) -> None:
    text = serving.read_text(encoding="utf-8")
    if text.count(_SERVE_DEF) != 1:
        raise ReleaseBuildError(
            f"cannot make an exits-on-start variant: {serving.name} no longer has exactly one "
            f"{_SERVE_DEF.strip()!r}; update tests/support/releases.py"
        )
    broken = "def _broken_serve(*_args: object, **_kwargs: object) -> None:\n"
    broken += '    raise SystemExit("this release exits on start, on purpose")\n\n\n'
    serving.write_text(text + "\n\n" + broken + "serve = _broken_serve  # noqa\n", encoding="utf-8")


def _uv() -> list[str]:
    """The uv that runs the suite (`uv run` names itself in $UV; `.ci/run` uses a pinned
    one of its own), else the one on the PATH."""
    found = os.environ.get("UV") or shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _build(source: Path, out_dir: Path) -> None:
    """Build offline from uv's cache first; fetch the build backend only if it is not cached."""
    command = [*_uv(), "build", "--wheel", "--python", sys.executable]
    command += ["--out-dir", str(out_dir), str(source)]
    offline = subprocess.run(
        [*command, "--offline"], capture_output=True, text=True, timeout=BUILD_TIMEOUT
    )
    if offline.returncode == 0:
        return
    online = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if online.returncode != 0:
        raise ReleaseBuildError(
            f"uv build failed offline:\n{offline.stderr}\nand online:\n{online.stderr}"
        )


def _check_wheel(wheel: Path, version: str) -> None:
    if not wheel.is_file():
        found = sorted(p.name for p in wheel.parent.glob("*.whl"))
        raise ReleaseBuildError(f"expected {wheel.name} after the build, found {found}")
    member = f"bastion-{version}.dist-info/METADATA"
    with zipfile.ZipFile(wheel) as archive:
        try:
            metadata = archive.read(member).decode("utf-8")
        except KeyError:
            raise ReleaseBuildError(f"{wheel.name} has no {member}") from None
    if f"\nVersion: {version}\n" not in metadata:
        raise ReleaseBuildError(f"{wheel.name}'s METADATA does not say Version: {version}")
