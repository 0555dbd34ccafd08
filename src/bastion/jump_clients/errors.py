"""The gateway's exception family."""

from __future__ import annotations


class GatewayError(Exception):
    """The gateway cannot start or serve as configured; the message says what to change."""
