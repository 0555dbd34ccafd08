"""The access console's exception family: each message says what happened and what to do.

`ConsoleError` is the base. The site refused (`RefusedError` and its kinds, with the
site's own words), or the site could not be reached (`ConsoleTransportError`, and
`ConsoleTrustError` when its certificate is not trusted).
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Base of every error the access console raises on purpose."""


class NotSignedInError(ConsoleError):
    """No saved sign-in, or the site no longer accepts it."""


class RefusedError(ConsoleError):
    """The site answered with an error; `status` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WrongCredentialsError(RefusedError):
    """The username or password is not right."""


class LockedOutError(RefusedError):
    """Too many attempts: the site takes no more for `retry_after` seconds."""

    def __init__(self, message: str, status: int, retry_after: int) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class NotPermittedError(RefusedError):
    """The signed-in user may not do this."""


class JumpRefusedError(RefusedError):
    """The Jump Item cannot be reached now (offline, Upgrade Pending, busy...)."""


class WatchRefusedError(ConsoleError):
    """The site closed a watch connection before it began (token used, session over)."""


class ConsoleTransportError(ConsoleError):
    """The site could not be reached, or the connection broke."""


class ConsoleTrustError(ConsoleTransportError):
    """The site's certificate is not trusted (or is for another name)."""


class MisunderstoodError(ConsoleError):
    """The site answered with something this console does not understand (the console
    and the site are of versions that do not speak to each other, or it is not a site)."""
