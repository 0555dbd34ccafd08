"""`/login > Management > Security`: the inter-appliance key of a failover pair;
`/login > Management > Failover`: the pair's state, establishing it, Sync Now; and, on a
backup, the site's pages hidden (R34): they belong to the primary, whose data the
backup's is overwritten by at each sync."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Form, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.accounts.deps import AdministratorDep, CsrfDep, page_actor
from bastion.accounts.sign_in import CurrentSession
from bastion.backups import service as backups
from bastion.failover import dns_swing, state, swap
from bastion.failover import service as failover
from bastion.failover import sync as pulling
from bastion.failover import upgrade as upgrading
from bastion.failover.api import FailoverDep, UpgradeDep
from bastion.failover.rules import PeerAddress, Role
from bastion.failover.service import EstablishRequest, FailoverSetup
from bastion.failover.state import Pair
from bastion.platform.errors import ConflictError, InvalidInputError, ServiceError
from bastion.platform.runtime import Runtime
from bastion.platform.unit_of_work import UnitOfWork
from bastion.platform.web.deps import UowDep
from bastion.platform.web.forms import reloads_go_to
from bastion.platform.web.routing import Router
from bastion.platform.web.templating import render_form

router = Router(include_in_schema=False)
SECURITY = "/login/management/security"
FAILOVER = "/login/management/failover"
PRIMARY_ONLY = ("/login/users", "/login/api-clients", "/login/jump/", "/login/reports", "/console")
"""The site's pages that change (or start) what a backup takes from its primary."""
Port = Annotated[int, Form(ge=1, le=65535)]
Host = Annotated[str, Form(max_length=255)]


def _page(
    request: Request,
    setup: FailoverSetup,
    current: CurrentSession | None,
    error: ServiceError | None = None,
    notice: str | None = None,
) -> Response:
    return render_form(
        request,
        "security.html",
        current,
        error,
        notice=notice,
        key_set=setup.keys.path.exists(),
        pair=setup.pair(),
    )


@router.get(SECURITY)
def security(request: Request, setup: FailoverDep, current: AdministratorDep) -> Response:
    return _page(request, setup, current)


@router.post(f"{SECURITY}/key", dependencies=[CsrfDep])
def set_key(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    key: Annotated[str, Form(max_length=4096)] = "",
    confirm_key: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    try:
        if key != confirm_key:
            raise InvalidInputError("The two keys differ; type the same key twice.")
        failover.set_key(uow, setup, page_actor(request, current), key)
    except ServiceError as error:
        return _page(request, setup, current, error)
    uow.commit()
    return _page(request, setup, current, notice="The inter-appliance key is set.")


reloads_go_to(router, SECURITY, f"{SECURITY}/key")


# The Failover page: the same establishing and Sync Now as the API's.


def _failover_page(
    request: Request,
    setup: FailoverSetup,
    current: CurrentSession | None,
    error: ServiceError | None = None,
    notice: str | None = None,
    form: dict[str, object] | None = None,
) -> Response:
    """The page; after a refused establishing, with the addresses as they were typed."""
    pair, checked = setup.pair(), state.read_status(setup.state_dir)
    runtime: Runtime = request.app.state.runtime
    with runtime.uow() as uow:
        interval = pulling.interval_seconds(uow)
    return render_form(
        request,
        "failover.html",
        current,
        error,
        notice=notice,
        key_set=setup.keys.path.exists(),
        pair=pair,
        form=form or {},
        checked=checked,
        split_brain=pair.role is not Role.NONE and checked.status == swap.SPLIT_BRAIN,
        shared_ips=[str(item) for item in setup.shared_ips],
        interval=interval,
        site_url=setup.site_url,
        dns_swing=setup.dns_swing,
        dns_status=dns_swing.read_status(setup.state_dir),
        upgrade=_upgrade_report(setup),
    )


def _upgrade_report(setup: FailoverSetup) -> dict[str, Any] | None:
    runbook = upgrading.read(setup.state_dir)
    return upgrading.report(runbook) if runbook is not None else None


@router.get(FAILOVER)
def failover_page(
    request: Request, setup: FailoverDep, current: AdministratorDep, hidden: str = ""
) -> Response:
    notice = None
    if hidden and setup.pair().role is Role.BACKUP:
        notice = "That page is the primary's: this appliance is the backup of a pair."
    return _failover_page(request, setup, current, notice=notice)


def primary_only(path: str) -> bool:
    return any(path == p.rstrip("/") or path.startswith(p.rstrip("/") + "/") for p in PRIMARY_ONLY)


SITE_API = (
    "/api/v1/accounts",
    "/api/v1/api-clients",
    "/api/v1/jump-clients",
    "/api/v1/jumpoints",
    "/api/v1/vault",
    "/api/v1/sessions",
    "/api/v1/console",
)
"""The API's site data (and sessions): on a backup its changes are refused, since the
primary's next sync would overwrite them. Reads, the machine's own settings and the
failover API stay open."""
CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def site_write(method: str, path: str) -> bool:
    return method in CHANGES and any(path == p or path.startswith(p + "/") for p in SITE_API)


def backup_hides_primary_pages(app: ASGIApp) -> ASGIApp:
    """On a backup, the primary's pages lead to the Failover page, which says where the
    primary is, and the API refuses changes to the site's data with the same advice."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            primary_only(scope["path"]) or site_write(scope["method"], scope["path"])
        ):
            runtime: Runtime = scope["app"].state.runtime
            setup = runtime.maybe(FailoverSetup)
            pair = setup.pair() if setup is not None else None
            if pair is not None and pair.role is Role.BACKUP:
                answer: Response
                if scope["path"].startswith("/api/"):
                    answer = JSONResponse(
                        {"error": {"type": "ConflictError", "message": _use_primary(pair)}},
                        status_code=409,
                    )
                else:
                    answer = RedirectResponse(f"{FAILOVER}?hidden=1", status_code=303)
                await answer(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


def _use_primary(pair: Pair) -> str:
    where = f" at https://{pair.peer.address}" if pair.peer else ""
    return (
        "This appliance is the backup of a failover pair: a change to the site's data here "
        f"would be overwritten by the primary's next sync. Make it on the primary{where}."
    )


def backup_context(request: Request) -> dict[str, Any]:
    """On every page: whether this appliance is a backup (the navigation then leaves out
    the primary's pages)."""
    runtime: Runtime = request.app.state.runtime
    setup = runtime.maybe(FailoverSetup)
    pair = setup.pair() if setup is not None else None
    return {"failover_backup": pair is not None and pair.role is Role.BACKUP}


@router.post(f"{FAILOVER}/establish", dependencies=[CsrfDep])
def establish(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    backup_host: Host,
    backup_port: Port,
    reverse_host: Host,
    reverse_port: Port,
) -> Response:
    wanted = EstablishRequest(
        PeerAddress(backup_host.strip(), backup_port),
        PeerAddress(reverse_host.strip(), reverse_port),
    )
    try:
        established = failover.establish(uow, setup, page_actor(request, current), wanted)
    except ServiceError as error:
        typed = {
            "backup_host": backup_host,
            "backup_port": backup_port,
            "reverse_host": reverse_host,
            "reverse_port": reverse_port,
        }
        return _failover_page(request, setup, current, error, form=typed)
    uow.commit()
    notice = (
        f"This appliance is now the primary; {wanted.backup} is its backup. Its first sync "
        f"starts in about a minute, or now with Sync Now. {established.merged.summary()}"
    )
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/sync", dependencies=[CsrfDep])
def sync_now(
    request: Request, setup: FailoverDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        pair = failover.sync_now(uow, setup, page_actor(request, current))
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    uow.commit()
    notice = f"Synced: {pair.last_sync_status} at {pair.last_sync_time}."
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/break", dependencies=[CsrfDep])
def break_pair(
    request: Request, setup: FailoverDep, uow: UowDep, current: AdministratorDep
) -> Response:
    try:
        left_as_is = failover.break_pair(uow, setup, page_actor(request, current))
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    uow.commit()
    notice = "The pair is broken: this appliance is standalone. " + (
        left_as_is or "Its peer is standalone too."
    )
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/become-primary", dependencies=[CsrfDep])
def become_primary(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    sync_first: Annotated[bool, Form()] = False,
    force: Annotated[bool, Form()] = False,
) -> Response:
    return _swap(request, setup, uow, current, Role.PRIMARY, sync_first, force)


@router.post(f"{FAILOVER}/become-backup", dependencies=[CsrfDep])
def become_backup(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    sync_first: Annotated[bool, Form()] = False,
    force: Annotated[bool, Form()] = False,
) -> Response:
    return _swap(request, setup, uow, current, Role.BACKUP, sync_first, force)


def _swap(
    request: Request,
    setup: FailoverSetup,
    uow: UnitOfWork,
    current: CurrentSession,
    role: Role,
    sync_first: bool,
    force: bool,
) -> Response:
    use_case = swap.become_primary if role is Role.PRIMARY else swap.become_backup
    actor = page_actor(request, current)
    try:
        pair = use_case(uow, setup, actor, sync_first, force)
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    uow.commit()
    notice = f"This appliance is now the {pair.role.value}." + (
        " The peer was not told: fix the split brain here when it is back."
        if pair.details.get("forced")
        else ""
    )
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/fix-split-brain", dependencies=[CsrfDep])
def fix_split_brain(
    request: Request, setup: FailoverDep, uow: UowDep, current: AdministratorDep
) -> Response:
    actor = page_actor(request, current)
    try:
        swap.fix_split_brain(uow, setup, actor)
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    uow.commit()
    notice = "Fixed: this appliance is the primary, and its peer is its backup again."
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/sync-interval", dependencies=[CsrfDep])
def sync_interval(
    request: Request,
    setup: FailoverDep,
    uow: UowDep,
    current: AdministratorDep,
    seconds: Annotated[int, Form(ge=1, le=2**31)],
) -> Response:
    try:
        failover.set_sync_interval(uow, setup, page_actor(request, current), seconds)
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    uow.commit()
    notice = f"The backup now pulls every {seconds} seconds."
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/site-check", dependencies=[CsrfDep])
def site_check(request: Request, setup: FailoverDep, current: AdministratorDep) -> Response:
    checked = swap.check_site_address(setup)
    if checked.leads_to_primary:
        return _failover_page(request, setup, current, notice=checked.message)
    return _failover_page(request, setup, current, ConflictError(checked.message))


reloads_go_to(
    router,
    FAILOVER,
    f"{FAILOVER}/sync-interval",
    f"{FAILOVER}/site-check",
    f"{FAILOVER}/establish",
    f"{FAILOVER}/sync",
    f"{FAILOVER}/break",
    f"{FAILOVER}/become-primary",
    f"{FAILOVER}/become-backup",
    f"{FAILOVER}/fix-split-brain",
)


# -- the pair's upgrade runbook (failover/upgrade.py) -----------------------------------------


@router.post(f"{FAILOVER}/upgrade", dependencies=[CsrfDep])
def start_upgrade(
    request: Request,
    setup: FailoverDep,
    upgrade: UpgradeDep,
    uow: UowDep,
    current: AdministratorDep,
    releases: Annotated[str, Form(max_length=2000)] = "",
    mode: Annotated[str, Form(max_length=10)] = "",
    backup_passphrase: Annotated[str, Form(max_length=1024)] = "",
    confirm_passphrase: Annotated[str, Form(max_length=1024)] = "",
    accept_licence: Annotated[bool, Form()] = False,
    accept_offline_clients: Annotated[bool, Form()] = False,
) -> Response:
    """Upgrade the Pair: the preflight and the backup now, the steps after in the
    background (the same use case as the API and the console)."""
    typed: dict[str, object] = {"releases": releases, "mode": mode}
    actor = page_actor(request, current)
    try:
        if mode not in ("sync", "async"):
            raise InvalidInputError("Choose the synchronous or the asynchronous upgrade.")
        backups.check_new_passphrase(backup_passphrase, confirm_passphrase)
        chosen = [line for line in releases.replace(",", "\n").splitlines() if line.strip()]
        request_ = upgrading.UpgradeRequest(
            chosen,
            upgrading.Mode(mode),
            backup_passphrase,
            accept_licence,
            accept_offline_clients,
        )
        upgrading.start(uow, setup, upgrade.installer, actor, request_)
    except ServiceError as error:
        return _failover_page(request, setup, current, error, form=typed)
    uow.commit()
    upgrading.run_in_background(setup, upgrade.installer, upgrade.uow, actor)
    notice = "The upgrade of the pair has started; the steps below go on by themselves."
    return _failover_page(request, setup, current, notice=notice)


def _control_upgrade(
    request: Request,
    setup: FailoverSetup,
    upgrade: upgrading.UpgradeSetup,
    current: CurrentSession,
    action: Callable[[FailoverSetup], object],
    notice: str,
) -> Response:
    try:
        action(setup)
    except ServiceError as error:
        return _failover_page(request, setup, current, error)
    if action is upgrading.resume:
        actor = page_actor(request, current)
        upgrading.run_in_background(setup, upgrade.installer, upgrade.uow, actor)
    return _failover_page(request, setup, current, notice=notice)


@router.post(f"{FAILOVER}/upgrade/stop", dependencies=[CsrfDep])
def stop_upgrade(
    request: Request, setup: FailoverDep, upgrade: UpgradeDep, current: AdministratorDep
) -> Response:
    """Stop before the next step (a step under way finishes)."""
    said = "The upgrade stops before its next step."
    return _control_upgrade(request, setup, upgrade, current, upgrading.stop, said)


@router.post(f"{FAILOVER}/upgrade/resume", dependencies=[CsrfDep])
def resume_upgrade(
    request: Request, setup: FailoverDep, upgrade: UpgradeDep, current: AdministratorDep
) -> Response:
    """Go on from the step that stopped or failed."""
    said = "The upgrade goes on."
    return _control_upgrade(request, setup, upgrade, current, upgrading.resume, said)


@router.post(f"{FAILOVER}/upgrade/forget", dependencies=[CsrfDep])
def forget_upgrade(
    request: Request, setup: FailoverDep, upgrade: UpgradeDep, current: AdministratorDep
) -> Response:
    """Forget a runbook that is not running (its backup file stays)."""
    said = "The upgrade's record is forgotten; its backup file stays."
    return _control_upgrade(request, setup, upgrade, current, upgrading.forget, said)


reloads_go_to(
    router,
    FAILOVER,
    f"{FAILOVER}/upgrade",
    f"{FAILOVER}/upgrade/stop",
    f"{FAILOVER}/upgrade/resume",
    f"{FAILOVER}/upgrade/forget",
)
