"""Suite-wide switches: where optional system tools are missing, tests skip with a reason,
unless BASTION_REQUIRE_ALL_TESTS=1 (set by CI), where such a skip is a failure.

The suite starts hundreds of Python processes (appliances, agents, consoles), so it keeps
their compiled bytecode even where the environment says not to write it
(PYTHONDONTWRITEBYTECODE): without it every process compiles the whole site from source,
which about doubled an appliance's start (7.4 s against 3.6 s on the 2-core CI machine)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REQUIRE_ALL = os.environ.get("BASTION_REQUIRE_ALL_TESTS") == "1"

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The suite's worker processes (pytest-xdist) are given COLUMNS=80 and LINES=24. Terminal
# output made at import (the console's Rich consoles) would keep that width for the whole
# run, so a test's own COLUMNS would not reach it; every process starts as a plain one does.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

# Properties are checked for what they assert, not for speed: on a busy 2-core machine an
# example may take longer than Hypothesis's default 200 ms deadline.
settings.register_profile("bastion", deadline=None)
settings.load_profile("bastion")


def skip_or_fail(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (BASTION_REQUIRE_ALL_TESTS=1: this environment must provide it)")
    pytest.skip(reason)


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright, for the browser tests."""
    if not CHROMIUM.exists():
        skip_or_fail(
            f"Chromium is not installed at {CHROMIUM}; install the Debian 'chromium' package "
            "to run the browser tests."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
