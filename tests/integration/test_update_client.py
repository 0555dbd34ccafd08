"""The appliance's TUF client against a real update-service process.

Every attack must be refused with its own reason and leave the appliance's
trusted metadata (``<data>/tuf``) and stored packages byte for byte unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from _update_env import UpdateService, Vendor, free_port, service, tree_bytes
from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, Timestamp

from bastion.releases.versions import ReleaseKind, ReleaseState, parse_version
from bastion.update_service.keys import load_signer
from bastion.updates import trust
from bastion.updates.client import UpdateClient
from bastion.updates.failures import (
    CorruptBundleError,
    DependencyMissingError,
    MetadataExpiredError,
    NotEnoughDiskError,
    RollbackError,
    TlsVerificationError,
    UpdateServiceUnreachableError,
    VerificationError,
    WrongApplianceError,
)
from tests.support.pki import TestCa

HOST = "127.0.0.22"
S, T = "support.acme.example", "help.other.example"
BASE, SITE = ReleaseKind.BASE, ReleaseKind.SITE
ON_BASE_10 = {BASE: parse_version("1.0"), SITE: parse_version("1.0")}


@dataclass
class World:
    vendor: Vendor
    service: UpdateService
    root: Path

    def client(self, name: str, site: str = S, key: Path | None = None) -> UpdateClient:
        data = self.root / name
        root = self.vendor.trusted_root()
        return UpdateClient(data, site, name, root, self.url, key, tls=self.service.tls())

    @property
    def url(self) -> str:
        return self.service.url

    def key(self, name: str, site: str = S) -> Path:
        return self.vendor.appliance(site, name, self.root / name / "state" / "appliance.pem")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("update-client")
    vendor = Vendor(root / "vendor")
    vendor.init()
    vendor.customer("acme")
    vendor.customer("other")
    vendor.site(S, "acme")
    vendor.site(T, "other")
    vendor.release("base", "1.1")
    vendor.release("site", "1.1", "--site", S, "--requires", "base>=1.1")
    vendor.release("site", "1.2", "--site", T)
    for spec in ("base:1.1", f"site:1.1@{S}", f"site:1.2@{T}"):
        vendor.admin("open-wave", spec, "--wave", "1")
    with service(vendor, HOST) as running:
        yield World(vendor, running, root)


def states(found: list) -> dict[str, ReleaseState]:  # type: ignore[type-arg]
    return {s.release.name: s.assessment.state for s in found}


def snapshot(client: UpdateClient) -> dict[str, bytes]:
    return tree_bytes(client.store.dir) | tree_bytes(client.packages_dir)


@pytest.fixture
def synced(world: World) -> UpdateClient:
    """A client of site S that already trusts the current metadata."""
    client = world.client(f"appliance-{free_port(HOST)}")
    client.check(ON_BASE_10)
    return client


def write_new(path: Path, data: bytes) -> None:
    """Replace a served file without touching the vendor's hard-linked package."""
    tmp = path.with_name(".attack")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@contextmanager
def attacked(path: Path) -> Iterator[Path]:
    saved = path.read_bytes()
    try:
        yield path
    finally:
        write_new(path, saved)


def find(found: list, name: str):  # type: ignore[no-untyped-def,type-arg]
    return next(s for s in found if s.release.name == name)


def served_target(world: World, client: UpdateClient, name: str) -> tuple[object, Path]:
    status = find(client.check(ON_BASE_10), name)
    return status, world.vendor.site_dir(S) / "targets" / status.target.get_prefixed_paths()[0]


def resigned_timestamp(
    world: World, expires_in: dt.timedelta, signer: CryptoSigner | None = None
) -> bytes:
    path = world.vendor.site_dir(S) / "metadata" / "timestamp.json"
    md = Metadata[Timestamp].from_bytes(path.read_bytes())
    md.signed.version += 1
    md.signed.expires = (dt.datetime.now(dt.UTC) + expires_in).replace(microsecond=0)
    md.sign(signer or load_signer(world.vendor.keys / "timestamp.pem"))
    return md.to_bytes()


def test_tampered_target_is_refused(world: World, synced: UpdateClient) -> None:
    status, served = served_target(world, synced, "base 1.1")
    before = snapshot(synced)
    with attacked(served):
        data = bytearray(served.read_bytes())
        data[len(data) // 2] ^= 0x01
        write_new(served, bytes(data))
        with pytest.raises(VerificationError, match="does not match its signed hash"):
            synced.download(status)
    assert snapshot(synced) == before


def test_target_longer_than_signed_is_refused(world: World, synced: UpdateClient) -> None:
    status, served = served_target(world, synced, "base 1.1")
    before = snapshot(synced)
    with attacked(served):
        write_new(served, served.read_bytes() + b"extra")
        with pytest.raises(VerificationError, match="longer than its signed length"):
            synced.download(status)
    assert snapshot(synced) == before


def test_metadata_signed_by_wrong_key_is_refused(world: World, synced: UpdateClient) -> None:
    before = snapshot(synced)
    with attacked(world.vendor.site_dir(S) / "metadata" / "timestamp.json") as path:
        forged = resigned_timestamp(world, dt.timedelta(days=1), CryptoSigner.generate_ed25519())
        write_new(path, forged)
        with pytest.raises(VerificationError, match=r"signature .* does not verify"):
            synced.check(ON_BASE_10)
    assert snapshot(synced) == before


def test_expired_timestamp_is_refused(world: World, synced: UpdateClient) -> None:
    before = snapshot(synced)
    with attacked(world.vendor.site_dir(S) / "metadata" / "timestamp.json") as path:
        write_new(path, resigned_timestamp(world, -dt.timedelta(hours=1)))
        with pytest.raises(MetadataExpiredError, match="clock is wrong"):
            synced.check(ON_BASE_10)
    assert snapshot(synced) == before


def test_replayed_older_timestamp_is_refused(world: World) -> None:
    client = world.client("replay-target")
    with attacked(world.vendor.site_dir(S) / "metadata" / "timestamp.json") as path:
        old = path.read_bytes()
        write_new(path, resigned_timestamp(world, dt.timedelta(days=1)))
        client.check(ON_BASE_10)
        before = snapshot(client)
        write_new(path, old)
        with pytest.raises(RollbackError, match="older than what this appliance already trusts"):
            client.check(ON_BASE_10)
    assert snapshot(client) == before


def test_metadata_of_another_site_is_refused(world: World, synced: UpdateClient) -> None:
    before = snapshot(synced)
    other = (world.vendor.site_dir(T) / "metadata" / "timestamp.json").read_bytes()
    with attacked(world.vendor.site_dir(S) / "metadata" / "timestamp.json") as path:
        write_new(path, other)
        with pytest.raises(WrongApplianceError, match=f"signed for site '{T}'"):
            synced.check(ON_BASE_10)
    assert snapshot(synced) == before


def test_site_never_lists_another_sites_release(world: World, synced: UpdateClient) -> None:
    names = set(states(synced.check(ON_BASE_10)))
    assert names == {"base 1.1", "site 1.1"}
    other = world.client("t-appliance", site=T)
    assert set(states(other.check(ON_BASE_10))) == {"base 1.1", "site 1.2"}


def test_unreachable_service_says_so(world: World) -> None:
    client = UpdateClient(
        world.root / "lost",
        S,
        "lost",
        world.vendor.trusted_root(),
        f"http://{HOST}:{free_port(HOST)}",
    )
    with pytest.raises(UpdateServiceUnreachableError, match="cannot reach the update service"):
        client.check(ON_BASE_10)


def test_dependency_missing_is_named(synced: UpdateClient) -> None:
    site = find(synced.check(ON_BASE_10), "site 1.1")
    with pytest.raises(DependencyMissingError, match=r"site 1\.1 needs base>=1\.1"):
        synced.plan(ON_BASE_10, [site])


def test_not_enough_disk_is_refused_before_download(world: World, synced: UpdateClient) -> None:
    status = find(synced.check(ON_BASE_10), "base 1.1")
    free = shutil.disk_usage(synced.store.dir).free
    data_dir = synced.store.dir.parent
    tight = UpdateClient(
        data_dir,
        S,
        "tight",
        world.vendor.trusted_root(),
        world.url,
        reserve_bytes=free + 1,
        tls=world.service.tls(),
    )
    before = snapshot(synced)
    with pytest.raises(NotEnoughDiskError, match="not enough disk space"):
        tight.download(status)
    assert snapshot(synced) == before


def bundle_for(world: World, client: UpdateClient) -> bytes:
    key = client.make_download_key(ON_BASE_10)
    response = world.service.post("/api/v1/bundles", json={"download_key": key})
    assert response.status_code == 200, response.text
    return response.content


@pytest.fixture(scope="module")
def bundle_world(world: World) -> tuple[World, UpdateClient, Path]:
    """Appliance a2 of site S with a bundle fetched for its download key."""
    a2 = world.client("a2", key=world.key("a2"))
    path = world.root / "a2-first.tar"
    path.write_bytes(bundle_for(world, a2))
    return world, a2, path


def test_bundle_for_another_appliance_is_refused(
    bundle_world: tuple[World, UpdateClient, Path],
) -> None:
    world, _a2, bundle = bundle_world
    a3 = world.client("a3", key=world.key("a3"))
    before = snapshot(a3)
    with pytest.raises(WrongApplianceError, match="made for appliance 'a2'"):
        a3.import_bundle(bundle, ON_BASE_10)
    assert snapshot(a3) == before


def rewrite_bundle(source: Path, dest: Path, change: Callable[[str, bytes], bytes]) -> Path:
    with tarfile.open(source) as old, tarfile.open(dest, "w") as new:
        for member in old.getmembers():
            data = change(member.name, old.extractfile(member).read())  # type: ignore[union-attr]
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
    return dest


def test_bundle_relabelled_for_another_appliance_is_refused(
    bundle_world: tuple[World, UpdateClient, Path],
) -> None:
    world, _a2, bundle = bundle_world
    a4 = world.client("a4", key=world.key("a4"))

    def relabel(name: str, data: bytes) -> bytes:
        if name != "bundle.json":
            return data
        return json.dumps({**json.loads(data), "appliance": "a4"}).encode()

    forged = rewrite_bundle(bundle, world.root / "relabelled.tar", relabel)
    before = snapshot(a4)
    with pytest.raises(WrongApplianceError, match="did not make"):
        a4.import_bundle(forged, ON_BASE_10)
    assert snapshot(a4) == before


def test_bundle_with_a_tampered_package_is_refused(
    bundle_world: tuple[World, UpdateClient, Path],
) -> None:
    world, a2, bundle = bundle_world

    def flip_last_package(name: str, data: bytes) -> bytes:
        if "site-1.1" not in name:
            return data
        return data[:-1] + bytes([data[-1] ^ 0x01])

    forged = rewrite_bundle(bundle, world.root / "tampered.tar", flip_last_package)
    before = snapshot(a2)
    with pytest.raises(VerificationError, match="does not match its signed hash"):
        a2.import_bundle(forged, ON_BASE_10)
    assert snapshot(a2) == before


def test_truncated_bundle_is_refused(bundle_world: tuple[World, UpdateClient, Path]) -> None:
    world, a2, bundle = bundle_world
    cut = world.root / "cut.tar"
    cut.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    before = snapshot(a2)
    with pytest.raises(CorruptBundleError, match="upload the whole file again"):
        a2.import_bundle(cut, ON_BASE_10)
    assert snapshot(a2) == before


def test_bundle_older_than_trusted_metadata_is_refused(
    bundle_world: tuple[World, UpdateClient, Path],
) -> None:
    world, a2, first = bundle_world
    a2.import_bundle(first, ON_BASE_10)
    world.vendor.release("license", "1", "--site", S, "--representatives", "5", "--endpoints", "50")
    world.vendor.admin("open-wave", f"license:1@{S}", "--wave", "1")
    second = world.root / "a2-second.tar"
    second.write_bytes(bundle_for(world, a2))
    found = a2.import_bundle(second, ON_BASE_10).statuses
    assert states(found)["license 1"] is ReleaseState.INSTALLABLE
    before = snapshot(a2)
    with pytest.raises(RollbackError, match="older than what this appliance already trusts"):
        a2.import_bundle(first, ON_BASE_10)
    assert snapshot(a2) == before


def test_root_key_rotation_is_followed(world: World, synced: UpdateClient) -> None:
    world.vendor.admin("rotate-root-key", "--retire", str(world.vendor.keys / "root-1.pem"))
    world.vendor.admin("refresh")
    synced.check(ON_BASE_10)
    assert os.readlink(synced.store.dir / "root.json") == "root_history/2.root.json"
    fresh = world.client("after-rotation")
    assert "base 1.1" in states(fresh.check(ON_BASE_10))


def test_a_service_whose_certificate_this_appliance_does_not_trust_is_named_so(
    world: World, tmp_path: Path
) -> None:
    """Without the service's CA (the system's trust store), and with another CA."""
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(TestCa("Some other CA").pem())
    for n, tls in enumerate(
        (trust.service_tls(None, None), trust.service_tls(other_ca.read_bytes(), None))
    ):
        root = world.vendor.trusted_root()
        client = UpdateClient(tmp_path / f"untrusting-{n}", S, "u", root, world.url, tls=tls)
        before = snapshot(client)
        with pytest.raises(TlsVerificationError, match="certificate verify failed") as refused:
            client.check(ON_BASE_10)
        assert "did not verify" in str(refused.value) and "CA" in str(refused.value)
        assert "cannot reach" not in str(refused.value)
        assert snapshot(client) == before


def test_the_trust_anchors_file_is_trusted_when_no_update_service_ca_is_set(
    world: World, tmp_path: Path
) -> None:
    """BASTION_TRUST_ANCHORS_FILE's CAs are trusted beside the system's, as for certificates."""
    tls = trust.service_tls(None, world.service.ca_file)
    client = UpdateClient(
        tmp_path / "anchors", S, "a", world.vendor.trusted_root(), world.url, tls=tls
    )
    assert {"base 1.1", "site 1.1"} <= set(states(client.check(ON_BASE_10)))


def test_a_download_is_verified_as_it_is_written_and_kept_once(synced: UpdateClient) -> None:
    status = find(synced.check(ON_BASE_10), "base 1.1")
    seen: list[tuple[int, int]] = []
    path = synced.download(status, lambda done, total: seen.append((done, total)))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == status.target.hashes["sha256"]
    assert seen[-1] == (status.target.length, status.target.length)
    assert [p.name for p in synced.packages_dir.iterdir()] == [path.name]  # no staging left
    again: list[tuple[int, int]] = []
    assert synced.download(status, lambda done, total: again.append((done, total))) == path
    assert again == []  # the stored copy verified again; nothing fetched


def test_a_bundle_copy_is_verified_even_when_the_package_is_held_already(
    bundle_world: tuple[World, UpdateClient, Path],
) -> None:
    """a9 holds base 1.1 already (downloaded); a bundle whose copy of it is damaged is refused."""
    world, _a2, _bundle = bundle_world
    a9 = world.client("a9", key=world.key("a9"))
    a9.download(find(a9.check(ON_BASE_10), "base 1.1"))
    good = world.root / "a9.tar"
    good.write_bytes(bundle_for(world, a9))

    def flip_base(name: str, data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 0x01]) if "base-1.1" in name else data

    damaged = rewrite_bundle(good, world.root / "a9-damaged.tar", flip_base)
    before = snapshot(a9)
    with pytest.raises(VerificationError, match="does not match its signed hash"):
        a9.import_bundle(damaged, ON_BASE_10)
    assert snapshot(a9) == before
    first = a9.import_bundle(good, ON_BASE_10)
    names = {s.target.hashes["sha256"]: s.release.name for s in first.statuses}
    assert [names[h] for h in first.held] == ["base 1.1"]
    assert "site 1.1" in [names[h] for h in first.stored]
    second = a9.import_bundle(good, ON_BASE_10)
    assert second.stored == () and sorted(second.held) == sorted(first.held + first.stored)
    assert second.download_key == first.download_key
