"""The agent exception family: the data was bad, the transport failed, or the site refused.

Shaped like TUF's: a `ProtocolError` means a peer sent something this code will not
accept (it is never caused by the network); a `TransportError` means the connection
could not be made or was lost; `TrustError` is the transport failure an administrator
must act on (the site's certificate is not signed by an anchor the agent trusts).
"""

from __future__ import annotations

from typing import Literal

ProtocolErrorCode = Literal[
    "malformed", "too_large", "unsupported_version", "unexpected", "authentication_failed"
]


class AgentError(Exception):
    """Base of every error the agent code raises on purpose."""


class ProtocolError(AgentError):
    """A frame that is not a valid message of this protocol, or not one expected now."""

    def __init__(self, code: ProtocolErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code: ProtocolErrorCode = code
        self.detail = detail


class TransportError(AgentError):
    """The site could not be reached, or the connection broke."""


class TrustError(TransportError):
    """The site presented a certificate that none of the agent's trust anchors signed."""


class IdentityError(AgentError):
    """The endpoint's key file is missing, unreadable or not an Ed25519 private key."""


class WakeRefusedError(AgentError):
    """A wake that is not from this agent's site, is stale, or was seen before."""


class UpgradeError(AgentError):
    """The new build could not be fetched, checked or installed; the old one runs on."""
