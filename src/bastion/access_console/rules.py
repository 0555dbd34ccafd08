"""Pure rules of the console's self-upgrade: what to do when the site runs another version,
and which build to run when the console starts. No I/O.

The console follows its site: a site of another version has the console fetch the site's
own build and run it (R10). It never goes back by itself: a site older than the console
is refused with a message, since an older site may not answer what a newer console asks.
After an upgrade the console runs the command once more in the new build, with a marker
saying so; if that build still differs from the site, it goes on as it is rather than
upgrade again (no loop).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bastion.releases.versions import Version, VersionError, parse_version


class Step(Enum):
    RUN = "run"
    """The site runs this console's version: go on."""
    UPGRADE = "upgrade"
    """Fetch the site's build, install it, run the command again in it."""
    SITE_OLDER = "site_older"
    """The site runs an older version: refuse, saying what to do."""
    STILL_DIFFERENT = "still_different"
    """Upgraded just now and still not the site's version: go on as is, saying so."""


def _version(text: str) -> Version | None:
    try:
        return parse_version(text)
    except VersionError:
        return None


def same_version(one: str, other: str) -> bool:
    """Equal as versions (1.1 is 1.1.0), else as text (a version that does not parse)."""
    first, second = _version(one), _version(other)
    if first is not None and second is not None:
        return first == second
    return one.strip() == other.strip()


def is_older(version: str, than: str) -> bool:
    """Whether `version` is older than `than`; False unless both parse."""
    first, second = _version(version), _version(than)
    return first is not None and second is not None and first < second


def next_step(console_version: str, site_version: str, upgraded_from: str = "") -> Step:
    """What a console of `console_version` does before a command against a site of
    `site_version`; `upgraded_from` is the version it upgraded itself from just now."""
    if same_version(console_version, site_version):
        return Step.RUN
    if upgraded_from:
        return Step.STILL_DIFFERENT
    if is_older(site_version, console_version):
        return Step.SITE_OLDER
    return Step.UPGRADE


@dataclass(frozen=True)
class CurrentBuild:
    """The build the console last upgraded itself to (its `current` pointer)."""

    version: str
    lib: str


def build_to_run(
    current: CurrentBuild | None, running_version: str, running_a_build: bool
) -> str | None:
    """The lib to run the console from instead of the running code, or None to go on.

    A build is run only from the installed code (never from another build: no loop), and
    only when it is newer than the installed code: a console installed afresh at the
    same or a newer version runs as installed.
    """
    if current is None or running_a_build or same_version(current.version, running_version):
        return None
    installed = _version(running_version)
    if installed is not None and not is_older(running_version, current.version):
        return None
    return current.lib
