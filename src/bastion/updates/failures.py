"""The update client's failures: one exception per kind of failure, and `translate`,
which turns what TUF and the network raised into one of them with a message that says
what happened and what to do."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from tuf.api import exceptions as tuf_errors

from bastion.updates.fetchers import TlsFailure, _ForeignSiteError


class UpdateClientError(Exception):
    """An update could not be checked, downloaded or imported; the message says why."""


class UpdateServiceUnreachableError(UpdateClientError):
    pass


class TlsVerificationError(UpdateClientError):
    """The update service's TLS certificate is not trusted by this appliance."""


class VerificationError(UpdateClientError):
    """A signature, length or hash does not verify."""


class RollbackError(VerificationError):
    """Metadata older than what the appliance already trusts (a replay)."""


class MetadataExpiredError(UpdateClientError):
    pass


class DependencyMissingError(UpdateClientError):
    pass


class NotEnoughDiskError(UpdateClientError):
    pass


class WrongApplianceError(UpdateClientError):
    """The files are for another appliance or another site."""


class CorruptBundleError(UpdateClientError):
    pass


MANUAL = "Use Manual Installation with an Appliance Download Key if this persists."


def _cause_chain(exc: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = exc
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


def translate(exc: Exception, source: str, offline: bool) -> UpdateClientError:
    """One actionable message per failure kind."""
    tls = next((e for e in _cause_chain(exc) if isinstance(e, TlsFailure)), None)
    if tls is not None and not offline:
        return _tls_error(tls, source)
    foreign = next((e for e in _cause_chain(exc) if isinstance(e, _ForeignSiteError)), None)
    if foreign is not None:
        return WrongApplianceError(
            f"{source} holds update metadata {foreign}, not for this appliance's site: "
            "get the files for this site (use this appliance's own download key)."
        )
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        return MetadataExpiredError(
            f"the update metadata from {source} has expired ({exc}). Either the files are stale "
            f"or this appliance's clock is wrong: it reads {now} UTC. Check the clock and NTP "
            "server (/appliance > Status > Basics, Networking > IP Configuration), then get "
            "fresh files."
        )
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return RollbackError(
            f"the update metadata from {source} is older than what this appliance already "
            f"trusts ({exc}): an old or replayed copy. Nothing was changed; get current files."
        )
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return VerificationError(
            f"a signature from {source} does not verify ({exc}): the files were not signed "
            "with the vendor's keys. Nothing was installed; do not use these files."
        )
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return VerificationError(
            f"a file from {source} is longer than its signed length ({exc}): it was altered "
            "or replaced. Nothing was installed; get the files again."
        )
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return VerificationError(
            f"a file from {source} does not match its signed hash ({exc}): it was altered or "
            "damaged in transit. Nothing was installed; get the files again."
        )
    if isinstance(exc, tuf_errors.RepositoryError):
        return VerificationError(f"the update metadata from {source} does not verify: {exc}")
    if offline:
        return CorruptBundleError(
            f"the bundle is incomplete or damaged ({exc}): upload the whole file again."
        )
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return UpdateServiceUnreachableError(
            f"the update service at {source} answered HTTP {exc.status_code}. {MANUAL}"
        )
    return UpdateServiceUnreachableError(
        f"cannot reach the update service at {source} ({exc}): check the network, DNS and "
        f"proxy settings. {MANUAL}"
    )


def _tls_error(failure: TlsFailure, source: str) -> UpdateClientError:
    if failure.untrusted:
        return TlsVerificationError(
            f"the TLS certificate of the update service at {source} did not verify "
            f"({failure.detail}): set the CA that issued it as the update service's CA under "
            "Update Service Settings on /appliance > Updates (or BASTION_UPDATE_SERVICE_CA_FILE), "
            "or check that the URL names the update service."
        )
    return UpdateServiceUnreachableError(
        f"the TLS handshake with the update service at {source} failed ({failure.detail}): "
        f"check that the URL's scheme (https or http) and port are the service's. {MANUAL}"
    )
