"""A Jump Client installed on an endpoint: its state directory, made from an installer.

Installing reads the installer file the site made, writes the anchors it carries (the
only certificates the client will trust), makes the endpoint's key pair (the private key
never leaves this directory) and registers the public key with the site over TLS,
with the installer's token. The site refuses an installer that is unknown, revoked,
expired, altered, for another site or for another site version, with its own message;
then nothing is left behind.

    <state>/installation.json   the site, its addresses, the mode, the client id
    <state>/anchors.pem         the trust anchors the installer carried
    <state>/identity.key        the endpoint's Ed25519 private key (0600)
"""

from __future__ import annotations

import base64
import http.client
import json
import platform
import shutil
import socket
import ssl
from dataclasses import asdict, dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bastion.agents.errors import AgentError
from bastion.agents.identity import EndpointIdentity, load_or_create
from bastion.agents.trust import anchor_fingerprints, anchors_context
from bastion.platform.files import write_atomically

INSTALLER_FORMAT = "bastion-jump-client-installer/1"
INSTALLATION = "installation.json"
ANCHORS = "anchors.pem"
IDENTITY = "identity.key"
REGISTER_PATH = "/api/v1/jump-clients/register"
TIMEOUT = 30.0


class InstallError(AgentError):
    """The Jump Client could not be installed; the message says why and what to do."""


@dataclass(frozen=True)
class Installation:
    """What the installed client needs to run: where its site is and who it is."""

    site: str
    site_url: str
    gateway: str
    mode: str
    client_id: str
    site_version: str
    jump_group: str = ""
    tag: str = ""
    kind: str = "jump_client"
    """"jump_client", or "jumpoint" (SSH sessions to servers in its network)."""

    @property
    def gateway_host(self) -> str:
        return self.gateway.rsplit(":", 1)[0].strip("[]")

    @property
    def gateway_port(self) -> int:
        return int(self.gateway.rsplit(":", 1)[1])


def read_installer(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InstallError(f"{path} is not a Jump Client installer: {error}") from None
    if not isinstance(body, dict) or body.get("format") != INSTALLER_FORMAT:
        raise InstallError(
            f"{path} is not a Jump Client installer of this format ({INSTALLER_FORMAT}); "
            "download one from the site's Jump Client Installer page."
        )
    missing = [
        k for k in ("site", "site_url", "gateway", "anchors", "token", "mode") if not body.get(k)
    ]
    if missing:
        raise InstallError(f"The installer lacks {', '.join(missing)}: download it again.")
    return body


KIND_NAMES = {"jump_client": ("Jump Client", "jump-client"), "jumpoint": ("Jumpoint", "jumpoint")}


def install(
    installer: Path, state: Path, agent_version: str, kind: str = "jump_client"
) -> Installation:
    """Install the client described by `installer` into `state` and register it; the
    installer must be one for `kind` (a Jump Client's or a Jumpoint's)."""
    body = read_installer(installer)
    made_for = str(body.get("kind", "jump_client"))
    if made_for != kind:
        name, command = KIND_NAMES.get(made_for, (made_for, made_for))
        raise InstallError(
            f"{installer} is a {name} installer, not a {KIND_NAMES[kind][0]} one: install "
            f"it with `bastion {command} install`, or download the right one from the site."
        )
    if (state / INSTALLATION).exists():
        raise InstallError(
            f"A Jump Client is installed in {state} already; uninstall it first "
            "(`bastion jump-client uninstall`) or choose another --dir."
        )
    state.mkdir(parents=True, exist_ok=True)
    try:
        return _install(body, state, agent_version)
    except BaseException:
        for name in (INSTALLATION, ANCHORS, IDENTITY):
            (state / name).unlink(missing_ok=True)
        raise


def _install(body: dict[str, Any], state: Path, agent_version: str) -> Installation:
    write_atomically(state / ANCHORS, str(body["anchors"]).encode(), 0o644)
    identity = load_or_create(state / IDENTITY)
    answer = _register(body, identity, state, agent_version)
    installed = Installation(
        site=str(body["site"]),
        site_url=str(body["site_url"]),
        gateway=str(body["gateway"]),
        mode=str(body["mode"]),
        client_id=str(answer["client_id"]),
        site_version=str(body.get("site_version", "")),
        jump_group=str(body.get("jump_group", "")),
        tag=str(body.get("tag", "")),
        kind=str(body.get("kind", "jump_client")),
    )
    write_atomically(state / INSTALLATION, json.dumps(asdict(installed), indent=2).encode())
    return installed


def load(state: Path) -> Installation:
    try:
        return Installation(**json.loads((state / INSTALLATION).read_text()))
    except FileNotFoundError:
        raise InstallError(
            f"No Jump Client is installed in {state}: run `bastion jump-client install FILE`."
        ) from None
    except (OSError, ValueError, TypeError) as error:
        raise InstallError(f"{state / INSTALLATION} is damaged ({error}); reinstall.") from None


def uninstall(state: Path) -> None:
    """Remove everything the installation wrote (the key first)."""
    (state / IDENTITY).unlink(missing_ok=True)
    shutil.rmtree(state, ignore_errors=True)


def machine_digest() -> str:
    """A digest of this machine's own id, so that the site can tell two installs on one
    machine apart from two machines, without learning the id."""
    for path in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            return sha256(b"bastion machine\0" + path.read_bytes().strip()).hexdigest()
        except OSError:
            continue
    return sha256(b"bastion machine\0" + socket.gethostname().encode()).hexdigest()


def _register(
    body: dict[str, Any], identity: EndpointIdentity, state: Path, agent_version: str
) -> dict[str, Any]:
    request = {
        "token": body["token"],
        "site": body["site"],
        "site_version": body.get("site_version", ""),
        "mode": body["mode"],
        "jump_group": body.get("jump_group", ""),
        "tag": body.get("tag", ""),
        "kind": body.get("kind", "jump_client"),
        "public_key": base64.b64encode(identity.public_key).decode(),
        "endpoint": {
            "machine": machine_digest(),
            "hostname": socket.gethostname(),
            "fqdn": socket.getfqdn(),
            "os": f"{platform.system()} {platform.release()}".strip(),
        },
        "agent_version": agent_version,
        "anchors": list(anchor_fingerprints(state / ANCHORS)),
    }
    return _post(str(body["site_url"]), request, anchors_context(state / ANCHORS))


def _post(site_url: str, body: dict[str, Any], tls: ssl.SSLContext) -> dict[str, Any]:
    url = urlsplit(site_url)
    connection = http.client.HTTPSConnection(
        url.hostname or "", url.port or 443, context=tls, timeout=TIMEOUT
    )
    try:
        connection.request(
            "POST", REGISTER_PATH, json.dumps(body), {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        answer = json.loads(response.read() or b"{}")
    except ssl.SSLCertVerificationError as error:
        raise InstallError(
            f"The site at {site_url} does not present a certificate the installer's anchors "
            f"trust ({error.verify_message}); download a new installer from the site."
        ) from None
    except (OSError, ValueError) as error:
        raise InstallError(f"Cannot register with the site at {site_url}: {error}.") from None
    finally:
        connection.close()
    if response.status != 201:
        message = (answer.get("error") or {}).get("message") or response.reason
        raise InstallError(f"The site refused this installation: {message}")
    return dict(answer)
