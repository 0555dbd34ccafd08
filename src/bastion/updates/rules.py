"""The update channel's rules: what an update service address may be, where each channel
setting comes from, and how a release that was rolled back is listed. No I/O."""

from __future__ import annotations

import re
from enum import StrEnum

MAX_CA_BYTES = 256 * 1024
"""A CA bundle for the update service; far more than any real chain needs."""
MAX_ROOT_BYTES = 1024 * 1024
"""A TUF root.json; a root with hundreds of keys stays well under this."""
MAX_URL_CHARACTERS = 2000

_URL = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<host>[^/?#@\s]+)(?P<path>/[^?#\s]*)?$"
)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:(?P<port>[0-9]{1,5}))?$")
URL_EXAMPLE = "https://updates.vendor.example"


class ChannelSettingError(ValueError):
    """A value for an update channel setting is not acceptable; the message says why."""


class Source(StrEnum):
    """Where a channel setting in effect comes from."""

    APPLIANCE = "appliance"
    """Set on this appliance (page, API or console), kept in its database."""
    ENVIRONMENT = "environment"
    """Its `BASTION_UPDATE_*` environment setting."""
    SITE_BUILD = "site build"
    """The trusted root shipped inside the site build."""
    SYSTEM = "system"
    """No CA set: the operating system's trust store and BASTION_TRUST_ANCHORS_FILE."""
    NONE = "none"
    """Not configured at all."""


def service_url(text: str) -> str:
    """The update service address as stored: http(s), a host, an optional path; no
    trailing slash. Raises ChannelSettingError with what is wrong and an example."""
    url = text.strip().rstrip("/")
    if len(url) > MAX_URL_CHARACTERS:
        raise ChannelSettingError(
            f"The update service URL is longer than {MAX_URL_CHARACTERS} characters."
        )
    match = _URL.match(url)
    if match is None or match["scheme"].lower() not in ("http", "https"):
        raise ChannelSettingError(
            f"{text.strip()!r} is not an update service URL: give https:// (or http://), the "
            f"host and an optional path, e.g. {URL_EXAMPLE}."
        )
    host = _HOST.match(match["host"])
    if host is None or (host["port"] is not None and not 0 < int(host["port"]) < 65536):
        raise ChannelSettingError(
            f"{match['host']!r} is not a host name or address with an optional port, "
            f"e.g. {URL_EXAMPLE} or https://192.0.2.10:8450."
        )
    return url


def within(data: bytes, limit: int, what: str) -> bytes:
    """`data` if it is not empty and at most `limit` bytes, else a ChannelSettingError."""
    if not data.strip():
        raise ChannelSettingError(f"The {what} is empty; paste or choose the file's content.")
    if len(data) > limit:
        raise ChannelSettingError(
            f"The {what} is larger than {limit // 1024} KiB; check that you chose the right file."
        )
    return data


ROLLED_BACK = "rolled-back"
"""The state a release is listed in after its last install was rolled back."""


def rolled_back_reason(why: str) -> str:
    """How a rolled-back release is listed: it is installed again only on an explicit retry."""
    return f"rolled back ({why}); it is installed again only if you ask for a retry"


def source_words(source: Source, variable: str, path: object = None) -> str:
    """Where a channel setting in effect comes from, as the page and the console say it."""
    if source is Source.APPLIANCE:
        return "set on this appliance"
    if source is Source.ENVIRONMENT:
        return f"from {variable}" + (f" ({path})" if path else "")
    if source is Source.SITE_BUILD:
        return "shipped with the site build"
    if source is Source.SYSTEM:
        anchors = f" and BASTION_TRUST_ANCHORS_FILE ({path})" if path else ""
        return f"none set: the operating system's trust store{anchors}"
    return f"not configured ({variable} is empty)"
