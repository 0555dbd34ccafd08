"""The site's web app in the test's own process, served by the appliance's own
listeners (uvicorn) over real TLS, with a bearer token of an API client of its own.
A test fails if a request made the site run a database statement on the event loop."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bastion.accounts import api_clients
from bastion.accounts.service import AccountsSetup
from bastion.entrypoints import compose
from bastion.entrypoints.serving import initialise
from bastion.entrypoints.web import create_app
from bastion.network.listeners import UvicornListeners
from bastion.platform.principals import Actor
from bastion.platform.runtime import Runtime
from bastion.platform.settings import ApplianceSettings
from bastion.supervisor.sockets import ListenAddress
from tests.support.appliance import free_port
from tests.support.loop_reads import marking_requests, statements_on_the_loop
from tests.support.pki import TestCa

HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServedApp:
    runtime: Runtime
    port: int
    tls: ssl.SSLContext
    """Trusts the CA that issued the listener's certificate (for `HOST` and the site)."""
    anchors: str
    """That CA's certificate, PEM."""
    authorization: str
    """`Bearer <token>` of the API client `api_client`."""

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}"


@asynccontextmanager
async def served_app(
    tmp: Path, hostname: str, api_client: str, **settings: Any
) -> AsyncIterator[ServedApp]:
    """`settings`: the appliance's settings beyond its data directory and host name."""
    runtime = compose.build(
        ApplianceSettings(
            data_dir=tmp / "appliance",
            hostname=hostname,
            listen=[f"{HOST}:8443"],
            password_hash_fast=True,
            ntp_server_default="",
            **settings,
        )
    )
    initialise(runtime)
    runtime.serving = True
    ca = TestCa()
    issued = ca.issue([HOST, hostname])
    chain = tmp / "server.pem"
    chain.write_bytes(issued.certificate_pem() + issued.key_pem())
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(chain)
    listeners = UvicornListeners(server_tls)
    compose.add_network(runtime, listeners)  # as the worker does
    listeners.attach(marking_requests(create_app(runtime)))
    port = free_port(HOST)
    await listeners.open(ListenAddress(HOST, port))
    try:
        with runtime.uow() as uow:
            hasher = runtime.part(AccountsSetup).hasher
            made = api_clients.create_client(uow, hasher, Actor(None, "test"), api_client)
            uow.commit()
        tls = ssl.create_default_context(cadata=ca.pem().decode())
        async with httpx.AsyncClient(base_url=f"https://{HOST}:{port}", verify=tls) as client:
            token = await client.post(
                "/api/v1/oauth/token",
                data={"client_id": made.client.client_id, "client_secret": made.client_secret},
            )
        bearer = f"Bearer {token.json()['access_token']}"
        with statements_on_the_loop(runtime.engine, serving_only=True) as on_the_loop:
            yield ServedApp(runtime, port, tls, ca.pem().decode(), bearer)
        # as a real appliance's test fails on its log's report (`tests.support.appliance`)
        assert on_the_loop == [], "database statements on the event loop:\n" + "\n".join(
            on_the_loop
        )
    finally:
        await listeners.close_all()
        runtime.engine.dispose()
