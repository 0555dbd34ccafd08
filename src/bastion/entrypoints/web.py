"""The appliance's web app: every capability's pages and API on the platform's app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp

from bastion.accounts import api as accounts_api
from bastion.accounts import pages as accounts_pages
from bastion.appliance import api as appliance_api
from bastion.appliance import health
from bastion.appliance import pages as appliance_pages
from bastion.audit import api as audit_api
from bastion.audit import pages as audit_pages
from bastion.backups import api as backups_api
from bastion.backups import pages as backups_pages
from bastion.certificates import api as certificates_api
from bastion.certificates import pages as certificates_pages
from bastion.failover import api as failover_api
from bastion.failover import pages as failover_pages
from bastion.failover import peer_api as failover_peer_api
from bastion.installs import api as installs_api
from bastion.installs import pages as installs_pages
from bastion.installs.views import banner_context, updates_page_context
from bastion.jump_clients import api as jump_clients_api
from bastion.jump_clients import pages as jump_clients_pages
from bastion.jumpoints import api as jumpoints_api
from bastion.jumpoints import pages as jumpoints_pages
from bastion.network import api as network_api
from bastion.network import pages as network_pages
from bastion.platform.runtime import Runtime
from bastion.platform.web.app import create_app as platform_app
from bastion.sessions import api as sessions_api
from bastion.sessions import console as sessions_console
from bastion.sessions import pages as sessions_pages
from bastion.sessions import terminal as sessions_terminal
from bastion.sessions import watching as sessions_watching
from bastion.updates import api as updates_api
from bastion.updates import pages as updates_pages

ROUTERS = (
    health.router,
    accounts_api.router,
    appliance_api.router,
    audit_api.router,
    network_api.router,
    backups_api.router,
    certificates_api.router,
    jump_clients_api.router,
    jumpoints_api.router,
    sessions_api.router,
    failover_api.router,
    failover_peer_api.router,
    sessions_console.router,
    sessions_terminal.router,
    sessions_watching.router,
    accounts_pages.router,
    audit_pages.router,
    backups_pages.router,
    appliance_pages.router,
    network_pages.router,
    certificates_pages.router,
    jump_clients_pages.router,
    jumpoints_pages.router,
    sessions_pages.router,
    failover_pages.router,
    updates_pages.router,
    installs_pages.router,
    updates_api.router,
    installs_api.router,
)


def create_app(runtime: Runtime) -> FastAPI:
    metrics = health.Metrics(runtime)
    app = platform_app(
        runtime,
        ROUTERS,
        handlers=accounts_pages.EXCEPTION_HANDLERS,
        page_context=[banner_context, failover_pages.backup_context],
        template_context={
            "updates.html": [updates_page_context],
            **accounts_pages.TEMPLATE_CONTEXT,
            "user.html": [
                *accounts_pages.TEMPLATE_CONTEXT["user.html"],
                sessions_pages.user_jump_groups,
            ],
        },
        middleware=[metrics.middleware, failover_pages.backup_hides_primary_pages],
    )
    app.state.metrics = metrics
    app.state.health = health.HealthProbe(runtime)
    return app


def served(app: FastAPI) -> ASGIApp:
    """What the listeners serve: the app, with `/check_health` answered ahead of it."""
    metrics: health.Metrics = app.state.metrics
    return metrics.health_ahead(app)
