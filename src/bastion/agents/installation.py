"""A Jump Client installed on an endpoint: its state directory, made from an installer.

Installing reads the installer file the site made, writes the anchors it carries (the
only certificates the client will trust), makes the endpoint's key pair (the private key
never leaves this directory) and registers the public key with the site over TLS,
with the installer's token. The site refuses an installer that is unknown, revoked,
expired, altered, for another site or for an earlier site version, with its own message;
then nothing is left behind.

An installer made for a later site version than the site runs (R11) is installed but
waits: the installer is kept, and the service registers with it once the site runs that
version, staying offline until then. Run over an installation for the same site, an
installer replaces it in place: the endpoint's key is kept, and the site keeps the
client's record (the registration carries the key's proof). An installer may name a
`site_address`: registration then dials it, and checks the certificate as the site URL's
host (a name that may not lead to that appliance where the client runs).

    <state>/installation.json   the site, its addresses, the mode, the client id
    <state>/pending.json        an installer waiting for its site version (0600)
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
from bastion.agents.trust import anchor_fingerprints_of, anchors_context_of
from bastion.platform.files import write_atomically

INSTALLER_FORMAT = "bastion-jump-client-installer/1"
INSTALLATION = "installation.json"
PENDING = "pending.json"
ANCHORS = "anchors.pem"
IDENTITY = "identity.key"
REGISTER_PATH = "/api/v1/jump-clients/register"
TIMEOUT = 30.0
NOT_YET = "SiteNotYetUpgradedError"
"""The error type of the site's answer to an installer for a later version of it."""


class InstallError(AgentError):
    """The Jump Client could not be installed; the message says why and what to do."""


class NotYetError(InstallError):
    """The installer is for a later site version than the site runs: wait, then retry."""


class SiteUnreachableError(InstallError):
    """The site did not answer the registration (or answered that it is busy): retry."""


@dataclass(frozen=True)
class Waiting:
    """Installed from an installer for a later site version: registers once the site
    runs it (the site's message says which versions)."""

    site: str
    site_version: str
    message: str


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
) -> Installation | Waiting:
    """Install the client described by `installer` into `state` and register it; the
    installer must be one for `kind` (a Jump Client's or a Jumpoint's). Over an
    installation for the same site, replace it in place (the endpoint's key is kept)."""
    body = read_installer(installer)
    made_for = str(body.get("kind", "jump_client"))
    if made_for != kind:
        name, command = KIND_NAMES.get(made_for, (made_for, made_for))
        raise InstallError(
            f"{installer} is a {name} installer, not a {KIND_NAMES[kind][0]} one: install "
            f"it with `bastion {command} install`, or download the right one from the site."
        )
    installed_for = installed_site(state)
    if installed_for is not None and installed_for != body["site"]:
        raise InstallError(
            f"A Jump Client of the site {installed_for!r} is installed in {state}; this "
            f"installer is for {body['site']!r}. Uninstall it first "
            "(`bastion jump-client uninstall`) or choose another --dir."
        )
    state.mkdir(parents=True, exist_ok=True)
    if installed_for is not None:  # replaced in place: what was there stays if this fails
        return _install(body, state, agent_version)
    try:
        return _install(body, state, agent_version)
    except BaseException:
        for name in (INSTALLATION, PENDING, ANCHORS, IDENTITY):
            (state / name).unlink(missing_ok=True)
        raise


def installed_site(state: Path) -> str | None:
    """The site of the installation (or the waiting installer) in `state`, if any."""
    for name in (INSTALLATION, PENDING):
        try:
            body = json.loads((state / name).read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            body = None
        if not isinstance(body, dict):
            raise InstallError(
                f"{state / name} is damaged: remove the installation "
                f"(`bastion jump-client uninstall --dir {state}`) and install again."
            )
        return str(body.get("site", ""))
    return None


def _install(body: dict[str, Any], state: Path, agent_version: str) -> Installation | Waiting:
    identity = load_or_create(state / IDENTITY)
    anchors = str(body["anchors"]).encode()
    try:
        answer = _register(body, identity, anchors, agent_version)
    except NotYetError as error:
        write_atomically(state / ANCHORS, anchors, 0o644)
        write_atomically(state / PENDING, json.dumps(body, indent=2).encode(), 0o600)
        (state / INSTALLATION).unlink(missing_ok=True)
        return Waiting(str(body["site"]), str(body.get("site_version", "")), str(error))
    write_atomically(state / ANCHORS, anchors, 0o644)
    return _installed(body, state, answer)


def register_pending(state: Path, agent_version: str) -> Installation:
    """Register with the installer that waits in `state` for its site version; raises
    NotYetError while the site runs an earlier one, SiteUnreachableError when it cannot
    be asked, and InstallError when it refuses for good."""
    try:
        body = json.loads((state / PENDING).read_text())
    except (OSError, ValueError) as error:
        raise InstallError(f"{state / PENDING} cannot be read ({error}); reinstall.") from None
    identity = load_or_create(state / IDENTITY)
    answer = _register(body, identity, (state / ANCHORS).read_bytes(), agent_version)
    return _installed(body, state, answer)


def waiting(state: Path) -> dict[str, Any] | None:
    """The installer waiting in `state` for its site version, if one does."""
    try:
        body = json.loads((state / PENDING).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise InstallError(f"{state / PENDING} cannot be read ({error}); reinstall.") from None
    return body if isinstance(body, dict) else None


def _installed(body: dict[str, Any], state: Path, answer: dict[str, Any]) -> Installation:
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
    (state / PENDING).unlink(missing_ok=True)
    return installed


def load(state: Path) -> Installation:
    try:
        return Installation(**json.loads((state / INSTALLATION).read_text()))
    except FileNotFoundError:
        pending = waiting(state)
        if pending is not None:
            raise NotYetError(
                f"The Jump Client in {state} waits for its site {pending.get('site')} to run "
                f"version {pending.get('site_version')}; it registers then."
            ) from None
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
    body: dict[str, Any], identity: EndpointIdentity, anchors: bytes, agent_version: str
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
        "anchors": list(anchor_fingerprints_of(anchors)),
        "proof": base64.b64encode(
            identity.sign_registration(str(body["site"]), str(body["token"]))
        ).decode(),
    }
    address = str(body.get("site_address") or "")
    return _post(str(body["site_url"]), request, anchors_context_of(anchors), address)


class _Dialled(http.client.HTTPSConnection):
    """HTTPS to `address`, the certificate checked as `host`: the site's name, which may
    not resolve to the appliance the installer was made for."""

    def __init__(self, host: str, port: int, address: str, tls: ssl.SSLContext) -> None:
        super().__init__(host, port, context=tls, timeout=TIMEOUT)
        self.address, self.tls = address, tls

    def connect(self) -> None:
        plain = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(plain, server_hostname=self.host)


def _post(
    site_url: str, body: dict[str, Any], tls: ssl.SSLContext, address: str = ""
) -> dict[str, Any]:
    """The registration, to the site URL's host, or dialled at `address` (an installer's
    `site_address`) and checked as that host."""
    url = urlsplit(site_url)
    host, port = url.hostname or "", url.port or 443
    connection = (
        _Dialled(host, port, address, tls)
        if address
        else http.client.HTTPSConnection(host, port, context=tls, timeout=TIMEOUT)
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
        raise SiteUnreachableError(
            f"Cannot register with the site at {site_url}: {error}."
        ) from None
    finally:
        connection.close()
    if response.status == 201:
        return dict(answer)
    refusal = answer.get("error") or {}
    message = refusal.get("message") or response.reason
    if response.status == 409 and refusal.get("type") == NOT_YET:
        raise NotYetError(message)
    if response.status in (429, 502, 503, 504):
        raise SiteUnreachableError(f"The site at {site_url} is busy ({message}).")
    raise InstallError(f"The site refused this installation: {message}")
