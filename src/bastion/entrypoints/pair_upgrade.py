"""Installing on this appliance for the pair's upgrade runbook (`failover/upgrade.py`):
the Updates page's own use cases (download, plan, licence, install), and a check of the
new version that a worker and a console of it can serve."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass

import httpx

from bastion.entrypoints.session_probe import SessionProbe, own_host
from bastion.failover.upgrade import Accepted, Prepared, free_bytes, needed_bytes
from bastion.installs import service as installs
from bastion.installs.service import InstallsSetup
from bastion.jump_clients.service import site_build
from bastion.platform import build as this_build
from bastion.platform.errors import ConflictError
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.releases.versions import ReleaseKind
from bastion.supervisor import slots
from bastion.supervisor.client import SupervisorClient
from bastion.supervisor.sockets import ListenAddress, parse_listen_address
from bastion.updates import service as updates

CONSOLE_SECONDS = 120.0


@dataclass(frozen=True)
class SiteInstaller:
    runtime: Runtime

    @property
    def _installs(self) -> InstallsSetup:
        return self.runtime.part(InstallsSetup)

    def _missing(self, releases: list[str]) -> list[str]:
        setup = self._installs.updates
        with self.runtime.uow() as uow:
            known = {s.release.name: s for s in updates.known_statuses(uow, setup)}
        missing = []
        for name in releases:
            status = known.get(name)
            if (
                status is None
                or not (setup.packages_dir / status.target.hashes["sha256"]).is_file()
            ):
                missing.append(name)
        return missing

    def prepare(self, releases: list[str], actor: Actor) -> Prepared:
        for name in self._missing(releases):
            with self.runtime.uow() as uow:
                updates.download(uow, self._installs.updates, actor, name)
                uow.commit()
        with self.runtime.uow() as uow:
            chosen = installs.plan(uow, self._installs, releases)
        site = [r for r in chosen.releases if r.kind is ReleaseKind.SITE]
        base = [r for r in chosen.releases if r.kind is ReleaseKind.BASE]
        estimate = chosen.estimate
        return Prepared(
            order=chosen.names,
            licences=sorted(chosen.licences),
            target_version=str(site[-1].version) if site else this_build.site_version(),
            needed_bytes=needed_bytes(estimate.package_bytes, estimate.database_bytes),
            free_bytes=free_bytes(self.runtime.settings.data_dir),
            offline=sorted(chosen.offline),
            base_version=self.base_version(),
            target_base=str(base[-1].version) if base else self.base_version(),
        )

    def install(self, releases: list[str], accepted: Accepted, actor: Actor) -> str:
        with self.runtime.uow() as uow:
            chosen = installs.plan(uow, self._installs, releases)
            pending = installs.submit(
                uow,
                self._installs,
                actor,
                chosen,
                accepted_licence=accepted.licence,
                accepted_offline=accepted.offline_clients,
            )
            uow.commit()
        return pending.install_id

    def outcome(self, install_id: str) -> tuple[str, list[dict[str, str]]]:
        status = self.runtime.part(SupervisorClient).status()
        finished = [
            {"release": e.release, "outcome": e.outcome.value, "reason": e.reason}
            for e in status.history
            if e.install_id.partition("+")[0] == install_id  # one entry per release: ID+name
        ]
        return status.state, finished

    def base_version(self) -> str:
        """The base the supervisor points at (read at each call: a base install changes
        it while this worker runs)."""
        return slots.base_version(self.runtime.settings.data_dir) or this_build.base_version()

    def verify(self) -> str:
        """Over this appliance's own TLS listener: `/check_health`, then what access
        consoles are told (`/api/v1/console/about`: the new version and this build);
        the Jump Client and console build that fleets will fetch; a console of the
        installed version run against its data (it opens the database, migrated); then,
        where a gateway runs, a test session to a Jump Client of this build
        (`session_probe`)."""
        settings = self.runtime.settings
        listen = parse_listen_address(settings.listen[0])
        base = f"https://{ListenAddress(own_host(listen.host), listen.port)}"
        version, build_id = this_build.site_version(), this_build.build_id()
        answer, health = _get(f"{base}/check_health")
        if answer.status_code != 200 or health.get("version") != version:
            raise ConflictError(f"{answer.url} answered {answer.status_code}: {answer.text[:200]}")
        answer, about = _get(f"{base}/api/v1/console/about")
        if (about.get("site_version"), about.get("site_build")) != (version, build_id):
            raise ConflictError(
                f"{answer.url} tells consoles {answer.text[:200]}, not {version} (build "
                f"{build_id})."
            )
        fleet = site_build(settings.data_dir)
        if fleet is None or fleet.version != version:
            raise ConflictError(
                f"This appliance serves no Jump Client and console build of {version} "
                f"({fleet.version if fleet else 'none'}): its fleet could not upgrade."
            )
        command = [sys.executable, "-m", "bastion", "failover", "status"]
        command += ["--data", str(settings.data_dir)]
        env = dict(os.environ)
        if settings.database_url is not None:  # in the environment, not on a command line
            env["BASTION_DATABASE_URL"] = settings.database_url.get_secret_value()
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=CONSOLE_SECONDS,
                check=False,
                env=env,
            )
        except subprocess.TimeoutExpired:
            raise ConflictError(
                f"The console did not answer within {CONSOLE_SECONDS:.0f} s."
            ) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ConflictError(f"The console failed ({done.returncode}): {' '.join(said)}")
        first = (done.stdout.strip().splitlines() or [""])[0]
        probe = self.runtime.maybe(SessionProbe)
        session = (
            probe.run()
            if probe is not None
            else "no test session: this appliance runs no Jump Client gateway"
        )
        return (
            f"health ok at {version}; consoles told {version} (build {build_id}); fleet build "
            f"{fleet.version}, {fleet.size:,} bytes; console: {first}; {session}"
        )


def _get(url: str) -> tuple[httpx.Response, dict[str, object]]:
    """An answer of this appliance's own listener (its certificate is not checked: the
    address is its own), and its JSON body."""
    try:
        answer = httpx.get(url, verify=False, timeout=10)
        body = answer.json()
    except (httpx.HTTPError, ValueError) as error:
        raise ConflictError(f"{url} did not answer: {error}") from None
    if not isinstance(body, dict):
        raise ConflictError(f"{url} answered {answer.text[:200]}")
    return answer, body
