"""Each update client failure becomes a service error that names its kind and what to do."""

from __future__ import annotations

import pytest

from bastion.platform.web.errors import status_of
from bastion.updates import failures
from bastion.updates.errors import as_on_updates_page, failure_of

CASES = [
    (
        failures.TlsVerificationError("certificate verify failed"),
        503,
        "The update service's TLS certificate is not trusted",
    ),
    (
        failures.UpdateServiceUnreachableError("no route"),
        503,
        "The update service cannot be reached",
    ),
    (failures.VerificationError("bad hash"), 400, "A signature or hash does not verify"),
    (failures.RollbackError("old copy"), 400, "A signature or hash does not verify"),
    (
        failures.MetadataExpiredError("expired"),
        409,
        "The update metadata expired or the clock is wrong",
    ),
    (
        failures.DependencyMissingError("site 1.1 needs base>=1.1"),
        409,
        "A required release is missing",
    ),
    (failures.NotEnoughDiskError("2 MiB free"), 503, "Not enough disk space"),
    (failures.CorruptBundleError("cut off"), 400, "The bundle is incomplete or damaged"),
    (failures.WrongApplianceError("another site"), 400, "The files are not for this appliance"),
]


@pytest.mark.parametrize(("error", "status", "heading"), CASES)
def test_online_failures_name_their_kind_and_manual_installation(
    error: failures.UpdateClientError, status: int, heading: str
) -> None:
    found = failure_of(error, online=True)
    assert status_of(found) == status
    assert str(found).startswith(f"{heading}: {error}")
    assert "Manual Installation" in str(found)


def test_a_refused_bundle_does_not_point_to_itself() -> None:
    found = str(failure_of(failures.CorruptBundleError("cut off"), online=False))
    assert found == "The bundle is incomplete or damaged: cut off"


@pytest.mark.parametrize(("error", "status", "heading"), CASES)
def test_on_the_updates_page_the_advice_points_below_not_to_the_page_itself(
    error: failures.UpdateClientError, status: int, heading: str
) -> None:
    shown = as_on_updates_page(str(failure_of(error, online=True)))
    assert "Manual Installation below" in shown and "/appliance > Updates" not in shown
