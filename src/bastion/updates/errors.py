"""The update steps' error family: which kind of failure it was, in words, and what to do (R23).

The TUF client's exceptions map one-to-one onto these; each is also one of the
service error kinds, so the web and API adapters give it the right status.
"""

from __future__ import annotations

from bastion.platform.errors import ConflictError, InvalidInputError, ServiceError, UnavailableError
from bastion.updates import failures

MANUAL_INSTALLATION = (
    "Manual Installation on /appliance > Updates: copy the Appliance Download Key, get the "
    "update files for it from the update service on any machine with access, and upload them."
)
MANUAL_INSTALLATION_BELOW = (
    "Manual Installation below: copy the Appliance Download Key, get the update files for it "
    "from the update service on any machine with access, and upload them under Update Software."
)
SETTINGS = "Update Service Settings on /appliance > Updates"
SETTINGS_BELOW = "Update Service Settings below"


def as_on_updates_page(message: str) -> str:
    """`message` as the Updates page shows it: its advice points below, not to this page."""
    return message.replace(MANUAL_INSTALLATION, MANUAL_INSTALLATION_BELOW).replace(
        SETTINGS, SETTINGS_BELOW
    )


class UpdateUnreachableError(UnavailableError):
    """The update service cannot be reached."""


class UpdateTlsError(UnavailableError):
    """The update service's TLS certificate is not trusted: the CA setting, or the URL."""


class UpdateVerificationError(InvalidInputError):
    """A signature or hash does not verify, or the files are not for this appliance."""


class UpdateClockError(ConflictError):
    """Update metadata expired, or the appliance clock is wrong."""


class UpdateDependencyError(ConflictError):
    """A release this one needs is missing."""


class UpdateDiskError(UnavailableError):
    """Not enough disk space for the download."""


class UpdatesNotConfiguredError(ConflictError):
    """The appliance lacks the update service address, site name or trusted root."""


_FAILURES: tuple[tuple[type[failures.UpdateClientError], type[ServiceError], str], ...] = (
    (
        failures.TlsVerificationError,
        UpdateTlsError,
        "The update service's TLS certificate is not trusted",
    ),
    (
        failures.UpdateServiceUnreachableError,
        UpdateUnreachableError,
        "The update service cannot be reached",
    ),
    (
        failures.MetadataExpiredError,
        UpdateClockError,
        "The update metadata expired or the clock is wrong",
    ),
    (failures.DependencyMissingError, UpdateDependencyError, "A required release is missing"),
    (failures.NotEnoughDiskError, UpdateDiskError, "Not enough disk space"),
    (failures.CorruptBundleError, UpdateVerificationError, "The bundle is incomplete or damaged"),
    (failures.WrongApplianceError, UpdateVerificationError, "The files are not for this appliance"),
    (failures.VerificationError, UpdateVerificationError, "A signature or hash does not verify"),
    (failures.UpdateClientError, UpdateUnreachableError, "The update failed"),
)


def failure_of(error: failures.UpdateClientError, online: bool) -> ServiceError:
    """The service error for a client failure: its kind in words, the reason, what to do."""
    kind, heading = next((s, h) for c, s, h in _FAILURES if isinstance(error, c))
    message = f"{heading}: {error}"
    if online and "Manual Installation" not in message:
        message += f" If the automatic update keeps failing, use {MANUAL_INSTALLATION}"
    return kind(message)
