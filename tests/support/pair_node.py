"""One real appliance of a failover pair as a test drives it: its API with a token that
is asked for again when a sync has replaced the API clients, and a restart on the same
address and data."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.test_api import bearer, get_token
from tests.support.appliance import RunningAppliance, start_appliance


@dataclass
class Node:
    appliance: RunningAppliance
    credentials: dict[str, str]
    stack: ExitStack
    hostname: str
    token: str = ""

    def start_again(self) -> None:
        """After `appliance.stop()`: the same appliance, address and data."""
        old = self.appliance
        self.appliance = self.stack.enter_context(
            start_appliance(
                old.log_path.parent,
                host=old.host,
                port=old.port,
                data_dir=old.data_dir,
                env=old.env,
                extra_args=["--hostname", self.hostname],
                trust=old.trust,
                verify_hostname=old.verify_hostname,
            )
        )
        self.token = ""

    @property
    def host(self) -> str:
        return self.appliance.host

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for _ in range(2):  # a sync replaces the API clients: then ask for a new token
            if not self.token:
                given = get_token(self.appliance, self.credentials)
                self.token = str(given.json().get("access_token", ""))
            with self.appliance.client(headers=bearer(self.token), timeout=120) as api:
                answer = api.request(method, path, **kwargs)
            if answer.status_code != 401:
                break
            self.token = ""
        return answer

    def failover(self) -> dict[str, Any]:
        answer = self.call("GET", "/api/v1/failover")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def role(self) -> str:
        return str(self.call("GET", "/check_health").json()["failover_role"])


def pair_up(first: Node, second: Node, key: str) -> None:
    """Both given `key`, the pair established from `first` (the primary) and synced; the
    backup then holds the primary's API clients, so it is driven with the primary's. Each
    is trusted with the other's CA too: an appliance that takes the primary role (or
    restarts) serves the site certificate the syncs brought, the first primary's."""
    for node, other in ((first, second), (second, first)):
        if other.appliance.ca_file not in node.appliance.trust:
            node.appliance.trust = [*node.appliance.trust, other.appliance.ca_file]
        node.appliance.verify_hostname = False
    for node in (first, second):
        assert node.call("PUT", "/api/v1/failover/key", json={"key": key}).status_code == 204
    body = {
        "backup_host": second.host,
        "backup_port": second.appliance.port,
        "reverse_host": first.host,
        "reverse_port": first.appliance.port,
    }
    answer = first.call("POST", "/api/v1/failover/establish", json=body)
    assert answer.status_code == 200, answer.text
    answer = first.call("POST", "/api/v1/failover/sync")
    assert answer.status_code == 200, answer.text
    second.credentials = first.credentials
