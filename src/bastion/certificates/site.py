"""The site's certificates as the running appliance holds them: the key vault, the
trusted roots, and the default certificate that every listener serves.

Built once by the composition root and used by the pages, the API, the console and
the restore of a backup alike.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography import x509 as cx509
from cryptography.hazmat.primitives import serialization

from bastion.certificates import internal_ca, service, tls
from bastion.certificates.key_vault import KeyVault
from bastion.certificates.rules import CertificateError
from bastion.certificates.x509 import CertificateBundle, load_certificates, load_system_trust_roots
from bastion.platform.principals import APPLIANCE, Actor
from bastion.platform.unit_of_work import UnitOfWork


@dataclass
class SiteCertificates:
    certs_dir: Path
    site_hostname: str
    uow: Callable[[], UnitOfWork]
    trust_anchors_file: Path | None = None
    """PEM file of private CAs whose certificates count as trusted (beside the system's)."""
    ssl_context: ssl.SSLContext | None = None
    """The listeners' shared context; None in a console command (the next start loads it)."""
    actor: Actor = field(default=APPLIANCE)
    tell_live_worker: Callable[[], bool] | None = None
    """In a console command: asks the running appliance, if any, to serve the new default."""

    @cached_property
    def vault(self) -> KeyVault:
        """Seals the store's private keys (its master key is made on first use)."""
        return tls.open_vault(self.certs_dir)

    @cached_property
    def trust_roots(self) -> list[cx509.Certificate]:
        """The roots a browser would trust, and the site's private CAs, read once."""
        extra = self.trust_anchors_file
        private = load_certificates(extra.read_bytes()) if extra else []
        return [*load_system_trust_roots(), *private]

    @property
    def internal_ca_file(self) -> Path:
        """This appliance's internal CA certificate: what clients trust for its own certificate."""
        return tls.paths(self.certs_dir).ca_cert

    def internal_ca(self) -> cx509.Certificate | None:
        """Read at each use: a factory reset makes a new internal CA while the appliance runs."""
        try:
            return load_certificates(self.internal_ca_file.read_bytes())[0]
        except (OSError, CertificateError, IndexError):
            return None

    def client_anchors(self) -> list[cx509.Certificate]:
        """What an agent installed now must trust to reach this site: the root that issued
        the served certificate (this appliance's internal CA, or a CA among the site's
        trust anchors), else the top of the served chain."""
        with self.uow() as uow:
            chain = service.default_chain(uow)
        if not chain:
            return []
        top = chain[-1]
        if top.issuer == top.subject:
            return [top]
        issuers = [c for c in self._known_roots() if c.subject == top.issuer]
        return issuers or [top]

    def _known_roots(self) -> list[cx509.Certificate]:
        internal = self.internal_ca()
        extra = self.trust_anchors_file
        anchors = load_certificates(extra.read_bytes()) if extra else []
        return [internal, *anchors] if internal else anchors

    def context(self) -> service.StoreContext:
        return service.StoreContext(
            self.site_hostname, self.trust_roots, internal_ca=self.internal_ca()
        )

    def served_fingerprints(self) -> set[str]:
        """SHA-256 of the certificate the listeners serve new connections and of the
        store's default one. They differ for the instant a new default is put in place,
        and on a backup whose sync brought the other appliance's default (until it
        restarts or takes the primary role, when it serves that one).
        Without listeners (a console command): what `certs/active/` holds."""
        with self.uow() as uow:
            chain = service.default_chain(uow)
        der = serialization.Encoding.DER
        found = {hashlib.sha256(c.public_bytes(der)).hexdigest() for c in chain[:1]}
        if self.ssl_context is not None:
            serving = tls.serving(self.ssl_context)
            return found | ({serving} if serving else set())
        try:
            served = load_certificates(tls.paths(self.certs_dir).served.read_bytes())[:1]
        except (OSError, CertificateError):
            served = []
        return found | {hashlib.sha256(c.public_bytes(der)).hexdigest() for c in served}

    def serve_default(self) -> None:
        """After a commit that chose a new default: new connections get it, no restart."""
        with self.uow() as uow:
            bundle = service.default_bundle(uow, self.vault)
        if bundle is None:
            return
        if self.ssl_context is not None:
            tls.serve(self.ssl_context, self.certs_dir, bundle)
            return
        tls.write_served(self.certs_dir, bundle)
        if self.tell_live_worker is not None:
            self.tell_live_worker()

    def prepare(self, listen_hosts: list[str]) -> None:
        """At every start: the store has a default certificate, written where the listeners
        load it. On the first start (or after an older release kept the site key in a plain
        file) the internal site certificate goes into the store, its key sealed."""
        with self.uow() as uow:
            bundle = service.default_bundle(uow, self.vault)
            if bundle is None:
                bundle = self._first_certificate(listen_hosts)
                service.add_default(uow, self.vault, self.actor, bundle, "internal")
                uow.commit()
        tls.write_served(self.certs_dir, bundle)
        internal_ca.remove_plain_keys(self.certs_dir)

    def _first_certificate(self, listen_hosts: list[str]) -> CertificateBundle:
        legacy = internal_ca.legacy_site_certificate(self.certs_dir)
        if legacy is not None:
            return legacy
        return internal_ca.create_site_certificate(self.certs_dir, self.site_hostname, listen_hosts)
