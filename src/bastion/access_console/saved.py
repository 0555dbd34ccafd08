"""The console's sign-in, kept between commands in `$XDG_CONFIG_HOME/bastion/console.json`
(`~/.config/bastion/console.json` by default): the site, the CA file it was trusted
with, the bearer token and who it is for. The file is readable by its owner only and
written whole or not at all."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from bastion.access_console.errors import ConsoleError, NotSignedInError
from bastion.platform.files import write_atomically

FILE = "console.json"


@dataclass(frozen=True)
class SavedSignIn:
    site: str
    token: str
    username: str
    expires_at: str
    ca_file: str | None = None

    def __repr__(self) -> str:  # the token stays out of tracebacks and logs
        return f"SavedSignIn(site={self.site!r}, username={self.username!r})"


def path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "bastion" / FILE


def save(saved: SavedSignIn, where: Path | None = None) -> Path:
    target = where or path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomically(target, json.dumps(asdict(saved), indent=2).encode(), 0o600)
    return target


def load(where: Path | None = None) -> SavedSignIn:
    target = where or path()
    try:
        body = json.loads(target.read_text())
        return SavedSignIn(**body)
    except FileNotFoundError:
        raise NotSignedInError(
            "Not signed in: run `bastion console sign-in --site https://HOST[:PORT] "
            "--username NAME` first."
        ) from None
    except (OSError, ValueError, TypeError) as error:
        raise ConsoleError(
            f"{target} is damaged ({error}); sign in again (`bastion console sign-in`)."
        ) from None


def forget(where: Path | None = None) -> bool:
    """Remove the saved sign-in; whether there was one."""
    target = where or path()
    existed = target.exists()
    target.unlink(missing_ok=True)
    return existed
