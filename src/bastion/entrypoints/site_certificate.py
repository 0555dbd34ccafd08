"""At every start: the store's default certificate is what the site serves.

On the first start (or after an older release kept the site key in a plain file)
the internal site certificate goes into the store as the default, its key sealed.
"""

from __future__ import annotations

from sqlalchemy import Engine

from bastion.adapters import tls
from bastion.adapters.db.engine import session_factory
from bastion.adapters.x509 import CertificateBundle
from bastion.domain.accounts import Principal, Role
from bastion.services import certificates
from bastion.services.audit import Actor
from bastion.services.unit_of_work import UnitOfWork
from bastion.settings import ApplianceSettings

APPLIANCE_ACTOR = Actor(Principal("appliance", Role.ADMINISTRATOR), "appliance")


def _first_certificate(settings: ApplianceSettings, listen_hosts: list[str]) -> CertificateBundle:
    legacy = tls.legacy_site_certificate(settings.certs_dir)
    if legacy is not None:
        return legacy
    return tls.create_site_certificate(settings.certs_dir, settings.hostname, listen_hosts)


def prepare(settings: ApplianceSettings, engine: Engine, listen_hosts: list[str]) -> None:
    """Make sure the store has a default certificate and write it where the listeners load it."""
    vault = tls.open_vault(settings.certs_dir)
    with UnitOfWork(session_factory(engine)) as uow:
        bundle = certificates.default_bundle(uow, vault)
        if bundle is None:
            bundle = _first_certificate(settings, listen_hosts)
            certificates.add_default(uow, vault, APPLIANCE_ACTOR, bundle, "internal")
            uow.commit()
    tls.write_served(settings.certs_dir, bundle)
    tls.remove_plain_keys(settings.certs_dir)
