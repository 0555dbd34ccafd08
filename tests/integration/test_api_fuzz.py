"""The API fuzzer (schemathesis) against a real appliance process over TLS, with every
check: no 5xx, no undocumented status, no answer that breaks the schema, no well-formed
request refused for a reason the schema does not document, no wrong answer to an
undeclared method. The exceptions and the example count are in `schemathesis.toml`
beside this file; the operations left out there have tests of their own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_api import create_client, get_token
from tests.support.appliance import RunningAppliance, start_appliance

CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("st")
EXAMPLES = int(os.environ.get("BASTION_FUZZ_EXAMPLES", "10"))
"""Per operation and phase; raise it for a deeper run (60 takes about four minutes)."""


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    # Backups scheduled by the fuzzer (into any absolute directory) must never run here.
    env = {"BASTION_BACKUP_SCHEDULE_POLL_SECONDS": "86400"}
    folder = tmp_path_factory.mktemp("fuzz")
    with start_appliance(folder, host="127.0.0.64", env=env) as running:
        yield running


@pytest.mark.timeout(900)
def test_the_api_keeps_its_contract_under_the_fuzzer(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    token = get_token(appliance, create_client(appliance, "fuzzer")).json()["access_token"]
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "--no-color",
        "run",
        f"{appliance.url}/api/v1/openapi.json",
        "--tls-verify",
        str(appliance.ca_file),
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        os.environ.get("BASTION_FUZZ_SEED", "20260301"),
        "--request-timeout",
        "60",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=840,
        cwd=tmp_path,  # its cache too
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    selected = re.search(r"Selected: (\d+)/\d+\s+Tested: (\d+)", output)
    assert selected and selected[1] == selected[2], output[-3000:]
    assert "Traceback" not in appliance.log()
