"""Suite-wide switches: where optional system tools are missing, tests skip with a reason,
unless BASTION_REQUIRE_ALL_TESTS=1 (set by CI), where such a skip is a failure."""

from __future__ import annotations

import os

import pytest

REQUIRE_ALL = os.environ.get("BASTION_REQUIRE_ALL_TESTS") == "1"


def skip_or_fail(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (BASTION_REQUIRE_ALL_TESTS=1: this environment must provide it)")
    pytest.skip(reason)
