"""Where a session's connection goes, and what its shell is given."""

from __future__ import annotations

import os
import pwd

import pytest

from bastion.agents.connection import Endpoint
from bastion.agents.errors import ProtocolError
from bastion.agents.protocol import StartSession
from bastion.agents.session import rendezvous_endpoint
from bastion.agents.shell import login_shell

CONTROL = Endpoint("bastion.test", 8443, "10.0.0.5", timeout=7)


def order(rendezvous: str) -> StartSession:
    return StartSession(session_id="s1", rendezvous=rendezvous, token="T" * 43)


@pytest.mark.parametrize(
    ("rendezvous", "address", "port"),
    [
        ("web.bastion.test:443", "web.bastion.test", 443),
        ("192.0.2.7:8443", "192.0.2.7", 8443),
        ("[2001:db8::1]:8443", "2001:db8::1", 8443),
        ("bastion.test:9443", "10.0.0.5", 9443),  # the site itself: where the client dials it
        ("web.bastion.test", "web.bastion.test", 443),
        ("[2001:db8::1]", "2001:db8::1", 443),
    ],
)
def test_the_session_connection_dials_the_rendezvous_named_as_the_site(
    rendezvous: str, address: str, port: int
) -> None:
    endpoint = rendezvous_endpoint(order(rendezvous), CONTROL)
    assert (endpoint.site, endpoint.address, endpoint.port) == ("bastion.test", address, port)
    assert endpoint.timeout == 7


@pytest.mark.parametrize("rendezvous", [":443", "host:0", "host:70000", "h:x", "[::1]:"])
def test_a_rendezvous_that_is_not_host_and_port_is_refused(rendezvous: str) -> None:
    with pytest.raises(ProtocolError, match="is not host:port"):
        rendezvous_endpoint(order(rendezvous), CONTROL)


def test_the_shell_is_the_users_login_shell_without_the_clients_own_variables() -> None:
    entry = pwd.getpwuid(os.getuid())
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": "/var/lib/bastion-jump-client/builds/2.0.0/lib",
        "BASTION_JUMP_CLIENT_BUILD": "/var/lib/bastion-jump-client/builds/2.0.0/lib",
        "COLUMNS": "80",
        "TERM": "dumb",
    }
    shell = login_shell(environ)
    assert shell.path == (entry.pw_shell if os.access(entry.pw_shell, os.X_OK) else "/bin/sh")
    assert shell.argv0 == "-" + os.path.basename(shell.path)
    assert shell.env == {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TERM": "xterm-256color",
        "HOME": entry.pw_dir,
        "SHELL": shell.path,
        "USER": entry.pw_name,
        "LOGNAME": entry.pw_name,
    }
    assert "env" not in repr(shell)
