"""The integration client's exception family: each message says what happened and what
to do. The site refused or sent something wrong (`SiteRefusedError`, `WrongSecretError`,
`MisunderstoodError`, `DigestMismatchError`), the site could not be reached
(`SiteUnreachableError`, `SiteTrustError`), or the site runs another version
(`VersionMismatchError`: this client never upgrades itself)."""

from __future__ import annotations


class IntegrationError(Exception):
    """Base of every error the integration client raises on purpose."""


class SiteRefusedError(IntegrationError):
    """The site answered with an error; `status` is its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class WrongSecretError(SiteRefusedError):
    """The client id or its secret is not right, or the API client was revoked."""


class MisunderstoodError(IntegrationError):
    """The site answered with something this client does not understand."""


class DigestMismatchError(IntegrationError):
    """A downloaded file is not what the site's record says (size or SHA-256)."""


class SiteUnreachableError(IntegrationError):
    """The site could not be reached, or the connection broke."""


class SiteTrustError(SiteUnreachableError):
    """The site's certificate is not trusted (or is for another name)."""


class VersionMismatchError(IntegrationError):
    """The site runs another version of Bastion; install the client of that version."""

    def __init__(self, site_version: str, own_version: str) -> None:
        super().__init__(
            f"The site runs Bastion {site_version}; this integration client is {own_version}. "
            f"Install the integration client {site_version} (pip install "
            f"bastion=={site_version}, or from the site's downloads) and run it again."
        )
        self.site_version = site_version
        self.own_version = own_version
