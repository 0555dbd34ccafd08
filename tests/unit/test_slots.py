"""Release slots on disk: wheels installed with their RECORD checked, links switched whole."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import zipfile
from pathlib import Path

import pytest

from bastion.releases.wheels import WheelError, install_wheel
from bastion.supervisor.slots import Releases


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, files: dict[str, bytes], record: dict[str, str] | None = None) -> Path:
    listed = {name: digest(data) for name, data in files.items()}
    listed.update(record or {})
    lines = [f"{name},{value},{len(files.get(name, b''))}" for name, value in listed.items()]
    lines.append("demo-1.0.dist-info/RECORD,,")
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("demo-1.0.dist-info/RECORD", "\n".join(lines))
    return path


def test_a_wheel_installs_as_an_import_path(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {"demo/__init__.py": b"X = 1\n", "demo-1.0.data/purelib/extra.py": b"Y = 2\n"},
    )
    install_wheel(wheel, tmp_path / "lib")
    assert (tmp_path / "lib" / "demo" / "__init__.py").read_bytes() == b"X = 1\n"
    assert (tmp_path / "lib" / "extra.py").is_file()


def test_installed_modules_are_compiled_and_a_broken_one_stays_source(tmp_path: Path) -> None:
    wheel = make_wheel(
        tmp_path / "demo-1.0-py3-none-any.whl",
        {"demo/__init__.py": b"X = 1\n", "demo/broken.py": b"def (:\n", "demo/data.txt": b"x"},
    )
    install_wheel(wheel, tmp_path / "lib")
    cached = tmp_path / "lib" / "demo" / "__pycache__"
    names = sorted(p.name.split(".")[0] for p in cached.iterdir())
    assert names == ["__init__"]
    init = tmp_path / "lib" / "demo" / "__init__.py"
    assert Path(importlib.util.cache_from_source(str(init))).is_file()


@pytest.mark.parametrize(
    ("files", "record", "says"),
    [
        ({"demo/a.py": b"changed"}, {"demo/a.py": digest(b"original")}, "RECORD hash"),
        ({"demo/a.py": b"x"}, {"demo/a.py": ""}, "not listed"),
        ({"../escape.py": b"x"}, None, "outside the slot"),
        ({"demo-1.0.data/scripts/run": b"x"}, None, "not importable"),
    ],
)
def test_a_tampered_or_unusual_wheel_is_refused(
    tmp_path: Path, files: dict[str, bytes], record: dict[str, str] | None, says: str
) -> None:
    wheel = make_wheel(tmp_path / "demo-1.0-py3-none-any.whl", files, record)
    with pytest.raises(WheelError, match=says):
        install_wheel(wheel, tmp_path / "lib")


def test_links_switch_atomically_and_slots_in_use_stay(tmp_path: Path) -> None:
    releases = Releases(tmp_path)
    first = releases.ensure_factory("site", "1.0")
    releases.point("current", first)
    (releases.root / "site-0.9").mkdir()
    (releases.root / "site-0.9" / "slot.json").write_text("{}")
    assert releases.target("current") == "site-1.0"
    assert releases.prune() == ["site-0.9"]
    assert releases.slots() == [first]
    releases.point("previous", first)
    releases.point("current", None)
    assert releases.target("current") is None
    assert releases.target("previous") == first
    assert not list(releases.root.glob(".*.tmp"))
