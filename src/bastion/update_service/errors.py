"""The update service's exception family.

Every message says what happened and what the vendor (or the person holding
an appliance download key) should do next. ``status`` is the HTTP status the
web layer answers with.
"""

from __future__ import annotations

from bastion.releases.packages import PackageError


class UpdateServiceError(Exception):
    """Base of every expected update-service failure."""

    status: int = 400


class MissingKeyError(UpdateServiceError):
    """A signing key the operation needs is not in the key directory."""

    status = 500


class RepositoryStateError(UpdateServiceError):
    """The repository on disk is missing or not initialised."""

    status = 500


class UnknownRecordError(UpdateServiceError):
    """A customer, site, release or appliance named does not exist."""

    status = 404


class InvalidRecordError(UpdateServiceError):
    """A value given for a customer, site or appliance is not acceptable."""


class DownloadKeyError(UpdateServiceError):
    """An appliance download key was refused."""

    status = 403


class ClockSkewError(DownloadKeyError):
    """The appliance clock is too far from the update service's clock."""


class NothingToDownloadError(UpdateServiceError):
    """Every release open to the appliance is installed."""

    status = 409


class KeyAlreadyAnsweredError(UpdateServiceError):
    """A download key gets one bundle; a new key gets the releases again."""

    status = 409


VENDOR_ERRORS = (UpdateServiceError, PackageError)
"""Every expected failure on the vendor side, each with the HTTP `status` to answer with."""
