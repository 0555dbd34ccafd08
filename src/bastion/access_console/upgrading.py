"""The console upgrading itself to its site's version (R10): fetch the site's build over the
sign-in's TLS, check it, install it beside the running code, and run the command again in
it. The rules (when to upgrade, which build to run) are `access_console/rules.py`.

    $XDG_DATA_HOME/bastion/console/              (else ~/.local/share/bastion/console)
        builds/<version>/lib    an installed build (the site's `bastion` wheel)
        current.json            the build to run: {"version", "lib"}

The build's size and SHA-256 come from the site (`GET /api/v1/console/build`), signed in
and over TLS verified as for every other call; the wheel's every file is checked against
its RECORD as it is installed, and it must be of the version announced. Nothing is
switched until the build is checked and installed whole: `current.json` is replaced
last, atomically. A failed upgrade leaves the running console as it was.

The installed code runs a newer build by re-executing itself (`python -m bastion ...`,
the same arguments) with the build's lib first on `PYTHONPATH` and `BUILD_ENV` naming
it; a build never re-executes into another build.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from bastion.access_console.client import ConsoleClient
from bastion.access_console.errors import ConsoleError
from bastion.access_console.protocol import ConsoleBuild
from bastion.access_console.rules import CurrentBuild, build_to_run, same_version
from bastion.platform.files import write_atomically
from bastion.releases.wheels import WheelError, install_wheel

BUILDS = "builds"
CURRENT = "current.json"
BUILD_ENV = "BASTION_CONSOLE_BUILD"
"""Set in a console running from a fetched build: the lib it runs from."""
UPGRADED_ENV = "BASTION_CONSOLE_UPGRADED_FROM"
"""Set when a console re-runs a command just after upgrading: the version it left."""


class ConsoleUpgradeError(ConsoleError):
    """The site's build could not be fetched, checked or installed; this console runs on."""


def home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local/share"
    return root / "bastion" / "console"


def current(where: Path) -> CurrentBuild | None:
    """The build `current.json` names, if it is there and installed."""
    try:
        body = json.loads((where / CURRENT).read_text())
        found = CurrentBuild(version=str(body["version"]), lib=str(body["lib"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return found if Path(found.lib).is_dir() else None


def upgrade(client: ConsoleClient, site_version: str, where: Path) -> CurrentBuild:
    """Fetch, check and install the site's build; make it the current one."""
    build = client.build()
    if not same_version(build.version, site_version):
        raise ConsoleUpgradeError(
            f"the site offers a build of {build.version}, not of {site_version} as it runs"
        )
    try:
        return _fetch_and_install(client, build, where)
    except OSError as error:
        raise ConsoleUpgradeError(f"the build could not be installed in {where}: {error}") from None


def _fetch_and_install(client: ConsoleClient, build: ConsoleBuild, where: Path) -> CurrentBuild:
    builds = where / BUILDS
    builds.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=builds, prefix=".fetch-") as work:
        wheel = Path(work) / f"bastion-{build.version}-py3-none-any.whl"
        with wheel.open("wb") as sink:
            digest = client.download(build, sink)
        if digest != build.sha256:
            raise ConsoleUpgradeError(
                f"the build's SHA-256 is {digest}, not {build.sha256} as the site announced"
            )
        lib = _installed(wheel, Path(work) / "lib", build.version)
        target = builds / build.version
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        os.rename(lib, target / "lib")
    made = CurrentBuild(version=build.version, lib=str(target / "lib"))
    write_atomically(
        where / CURRENT, json.dumps({"version": made.version, "lib": made.lib}).encode()
    )
    _prune(builds, keep=build.version)
    return made


def _installed(wheel: Path, lib: Path, version: str) -> Path:
    try:
        install_wheel(wheel, lib)
    except WheelError as error:
        raise ConsoleUpgradeError(f"the build does not install: {error}") from None
    if not (lib / f"bastion-{version}.dist-info").is_dir():
        raise ConsoleUpgradeError(f"the build is not the bastion package of version {version}")
    return lib


def _prune(builds: Path, keep: str) -> None:
    """Older builds go; the one running now may be one, and it is loaded already."""
    for build in builds.iterdir():
        if build.name != keep and not build.name.startswith("."):
            shutil.rmtree(build, ignore_errors=True)


def running_a_build() -> bool:
    return bool(os.environ.get(BUILD_ENV))


def upgraded_from() -> str:
    return os.environ.get(UPGRADED_ENV, "")


def lib_to_run(running_version: str, where: Path | None = None) -> str | None:
    """The build to re-execute into when the console starts, if any."""
    return build_to_run(current(where or home()), running_version, running_a_build())


def run_from(lib: str, upgraded_from: str = "") -> NoReturn:
    """Replace this process with the same console command running from `lib`."""
    env = {k: v for k, v in os.environ.items() if k not in (BUILD_ENV, UPGRADED_ENV)}
    left = os.environ.get(BUILD_ENV, "")
    others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != left]
    env["PYTHONPATH"] = os.pathsep.join([lib, *others])
    env[BUILD_ENV] = lib
    if upgraded_from:
        env[UPGRADED_ENV] = upgraded_from
    command = [sys.executable, "-m", "bastion", *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, command, env)
