"""A third-party TUF client (tuf-js, Node) verifies the update service's repositories.

Skipped when ``node`` or the tuf-js package is missing; install it with
``npm install --prefix tests/interop`` (or point ``BASTION_TUF_JS_NODE_MODULES``
at a ``node_modules`` directory holding tuf-js).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from _update_env import UpdateService, Vendor, service

HERE = Path(__file__).resolve().parent
SITE = "support.acme.example"


def node_modules() -> Path | None:
    for candidate in (os.environ.get("BASTION_TUF_JS_NODE_MODULES"), HERE / "node_modules"):
        if candidate and (Path(candidate) / "tuf-js" / "package.json").exists():
            return Path(candidate)
    return None


@pytest.fixture(autouse=True)
def _needs_tuf_js() -> None:
    if shutil.which("node") is None:
        skip_or_fail("node is not installed")
    if node_modules() is None:
        skip_or_fail("tuf-js is missing: npm ci --prefix tests/interop")


def tuf_js(
    running: UpdateService, root: bytes, work: Path, target: str
) -> subprocess.CompletedProcess[str]:
    metadata = work / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    (metadata / "root.json").write_bytes(root)
    (work / "targets").mkdir(exist_ok=True)
    site = f"{running.url}/sites/{SITE}"
    args = [f"{site}/metadata", f"{site}/targets", str(metadata), str(work / "targets"), target]
    env = {**os.environ, "NODE_PATH": str(node_modules())}
    env["NODE_EXTRA_CA_CERTS"] = str(running.ca_file)  # the service's test CA
    command = ["node", str(HERE / "tuf_js_fetch.js"), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_tuf_js_verifies_a_site_repository(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path / "vendor")
    vendor.init()
    vendor.customer("acme")
    vendor.site(SITE, "acme")
    package = vendor.release("base", "1.1")
    vendor.admin("open-wave", "base:1.1", "--wave", "1")
    vendor.admin("rotate-root-key", "--retire", str(vendor.keys / "root-1.pem"))
    target = "base/bastion-base-1.1.tar.gz"
    with service(vendor, "127.0.0.26") as running:
        result = tuf_js(running, vendor.trusted_root(), tmp_path / "good", target)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["sha256"] == hashlib.sha256(package.read_bytes()).hexdigest()
        assert Path(answer["path"]).read_bytes() == package.read_bytes()
        assert answer["custom"]["bastion"]["kind"] == "base"

        served = next((vendor.site_dir(SITE) / "targets" / "base").iterdir())
        served.unlink()
        original = package.read_bytes()
        served.write_bytes(original[:-1] + bytes([original[-1] ^ 0x01]))
        refused = tuf_js(running, vendor.trusted_root(), tmp_path / "bad", target)
        assert refused.returncode == 1
        assert "hash" in refused.stderr.lower() or "length" in refused.stderr.lower()
