"""Release wheels built from this checkout: the asked-for version, and a broken-health variant."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.support.releases import project_wheel


def test_project_wheel_has_the_package_at_the_given_version(tmp_path: Path) -> None:
    wheel = project_wheel("9.9.9", tmp_path)

    assert wheel.name == "bastion-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("bastion-9.9.9.dist-info/METADATA").decode()
        health = archive.read("bastion/appliance/health.py").decode()
    assert "bastion/__init__.py" in names
    assert "Version: 9.9.9" in metadata.splitlines()
    assert "broken on purpose" not in health
    assert not any("__pycache__" in name for name in names)
    assert project_wheel("9.9.9", tmp_path) == wheel


def test_broken_health_variant_answers_500(tmp_path: Path) -> None:
    wheel = project_wheel("9.9.9", tmp_path, broken_health=True)

    with zipfile.ZipFile(wheel) as archive:
        health = archive.read("bastion/appliance/health.py").decode()
    assert "broken on purpose" in health and "return 500, body" in health
    compile(health, "health.py", "exec")
