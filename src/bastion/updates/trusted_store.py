"""The appliance's trusted TUF metadata directory (``<data-dir>/tuf/``) and its atomic commits."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path


class TrustedStore:
    """The trusted metadata directory, changed only by committing a verified staging copy."""

    def __init__(self, tuf_dir: Path) -> None:
        self.dir = tuf_dir

    @contextmanager
    def staged(self) -> Iterator[Path]:
        """A copy to run the Updater over; committed only if the block succeeds."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.dir.parent, prefix=".tuf-stage-") as tmp:
            stage = Path(tmp) / "tuf"
            shutil.copytree(self.dir, stage, symlinks=True)
            yield stage
            self._commit(stage)

    def _commit(self, stage: Path) -> None:
        files = sorted(p for p in stage.rglob("*") if p.is_file() and not p.is_symlink())
        # root history first and timestamp last, so a crash leaves a usable directory
        for path in sorted(files, key=lambda p: (p.name == "timestamp.json", str(p))):
            live = self.dir / path.relative_to(stage)
            if not live.exists() or live.read_bytes() != path.read_bytes():
                _atomic_copy(path, live)
        for link in (p for p in stage.rglob("*") if p.is_symlink()):
            live = self.dir / link.relative_to(stage)
            if not live.is_symlink() or os.readlink(live) != os.readlink(link):
                tmp = live.with_name(f".{live.name}.link")
                tmp.unlink(missing_ok=True)
                os.symlink(os.readlink(link), tmp)
                os.replace(tmp, live)


def _atomic_copy(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as out, source.open("rb") as data:
        shutil.copyfileobj(data, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)


def shipped_root() -> bytes | None:
    """The update repository's root.json shipped inside this site build, if it has one."""
    shipped = resources.files("bastion").joinpath("site_build/root.json")
    return shipped.read_bytes() if shipped.is_file() else None
